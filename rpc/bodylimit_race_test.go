//go:build race

package rpc_test

// bombHeapLimit bounds the heap growth of TestGzipBombBurst. The race
// detector's sync.Pool drops items at random, so pooled chunks are
// allocated again: measured 47-51 MiB on 2 CPUs.
const bombHeapLimit = 96 << 20
