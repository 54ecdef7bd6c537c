//go:build !race

package rpc_test

// bombHeapLimit bounds the heap growth of TestGzipBombBurst: measured
// 17-24 MiB on 2 CPUs (4 decompression slots of the 4 MiB limit, plus the
// bodies in flight), against 250-450 MiB without the bound.
const bombHeapLimit = 64 << 20
