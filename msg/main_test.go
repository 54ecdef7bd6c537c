package msg_test

import (
	"os"
	"testing"

	"go.uber.org/goleak"
)

func TestMain(m *testing.M) {
	if os.Getenv(producerEnv) != "" {
		runProducer()
	}
	if os.Getenv(consumerEnv) != "" {
		runConsumer()
	}
	goleak.VerifyTestMain(m)
}
