// Package nodetest holds test helpers for packages built on a coordination
// node: an embedded node in a temporary directory, and bounded contexts.
package nodetest
