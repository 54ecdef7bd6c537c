package msg_test

import (
	"os"
	"testing"

	"go.uber.org/goleak"

	"github.com/concordrpc/concord/internal/clustertest"
)

func TestMain(m *testing.M) {
	clustertest.MaybeRunNode() // a child process serving a cluster node
	if os.Getenv(producerEnv) != "" {
		runProducer()
	}
	if os.Getenv(consumerEnv) != "" {
		runConsumer()
	}
	goleak.VerifyTestMain(m)
}
