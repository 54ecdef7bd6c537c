package main

import (
	"os"
	"testing"

	"github.com/concordrpc/concord/internal/clustertest"
)

func TestMain(m *testing.M) {
	clustertest.MaybeRunNode() // a child process serving a cluster node
	os.Exit(m.Run())
}
