// Package keylock serializes work per key within a process: a map of
// mutexes that can be waited for under a context, holding memory only for
// keys that are locked or waited for.
package keylock
