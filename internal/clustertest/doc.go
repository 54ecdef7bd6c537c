// Package clustertest runs Concord coordination nodes in child processes,
// so that tests can form real clusters and kill nodes with SIGKILL.
//
// A test binary that uses it calls MaybeRunNode first thing in TestMain:
// the child processes are the test binary itself, re-run with an
// environment that makes MaybeRunNode serve one node instead of the tests.
package clustertest
