package lock_test

import (
	"bufio"
	"context"
	"fmt"
	"os"
	"testing"
	"time"

	"go.uber.org/goleak"

	"github.com/concordrpc/concord/coord"
	"github.com/concordrpc/concord/coord/lock"
	"github.com/concordrpc/concord/internal/clustertest"
	"github.com/concordrpc/concord/internal/nodetest"
)

// holderEnv makes the test binary run runHolder instead of the tests, so a
// test can kill -9 a lock holder's process.
const holderEnv = "CONCORD_LOCK_TEST_HOLDER"

func TestMain(m *testing.M) {
	clustertest.MaybeRunNode()
	if os.Getenv(holderEnv) != "" {
		runHolder()
	}
	goleak.VerifyTestMain(m)
}

// runHolder connects to the node at HOLDER_URL, takes the lock
// HOLDER_LOCK with a 2s TTL, prints "LOCKED <token>" and holds it until
// killed. On each "CHECK" line on stdin it prints "VALID <Valid()>" and
// then "DONE" once Done is closed (or "NOTDONE" after 10s).
func runHolder() {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	n, err := coord.Open(ctx, coord.WithClient([]string{os.Getenv("HOLDER_URL")}, nodetest.ClientAuth()),
		coord.WithName("holder"), quiet())
	if err != nil {
		fmt.Fprintln(os.Stderr, "holder:", err)
		os.Exit(1)
	}
	mu := lock.NewMutex(lock.FromNode(n), os.Getenv("HOLDER_LOCK"), lock.WithTTL(2*time.Second))
	token, err := mu.Lock(ctx)
	if err != nil {
		fmt.Fprintln(os.Stderr, "holder:", err)
		os.Exit(1)
	}
	fmt.Printf("LOCKED %d\n", token)
	sc := bufio.NewScanner(os.Stdin)
	for sc.Scan() {
		if sc.Text() != "CHECK" {
			continue
		}
		fmt.Printf("VALID %v\n", mu.Valid())
		select {
		case <-mu.Done():
			fmt.Println("DONE")
		case <-time.After(10 * time.Second):
			fmt.Println("NOTDONE")
		}
	}
	time.Sleep(time.Minute) // killed long before
	os.Exit(2)
}

var quiet = nodetest.Quiet

// openNode opens an embedded node in a temporary directory, closed at
// cleanup.
var openNode = nodetest.Open

// within returns a context that ends after d (or with the test).
var within = nodetest.Within
