package concord_test

import (
	"context"
	"log/slog"
	"net/http"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"connectrpc.com/connect/v2"

	"github.com/concordrpc/concord"
	"github.com/concordrpc/concord/coord"
	"github.com/concordrpc/concord/examples/greeter/gen/greeter/v1/greeterv1concord"
	"github.com/concordrpc/concord/examples/greeter/gen/greeter/v1/greeterv1connect"
	"github.com/concordrpc/concord/examples/greeter/greeter"
	"github.com/concordrpc/concord/internal/nodetest"
	"github.com/concordrpc/concord/rpc"
)

// TestClusterScopedLimit runs three instances (Apps in client mode against
// one coordination node) that share a cluster-scoped limit on Shout, offers
// each of them far more than the whole limit for two seconds, and checks
// that the aggregate admissions stay within rate*t + burst + slack.
func TestClusterScopedLimit(t *testing.T) {
	if testing.Short() {
		t.Skip("runs three instances under load")
	}
	ctx, cancel := context.WithTimeout(t.Context(), 60*time.Second)
	defer cancel()
	quiet := slog.New(slog.DiscardHandler)
	node, err := coord.Open(ctx, coord.WithDataDir(t.TempDir()), coord.WithListen("127.0.0.1:-1"), nodetest.ListenAuth(), coord.WithLogger(quiet))
	if err != nil {
		t.Fatal(err)
	}
	defer node.Close()

	const rate, burst, instances = 40, 10, 3
	limit := &rpc.RateLimitPolicy{Algorithm: rpc.TokenBucket, Rate: rate, Per: time.Second, Burst: burst, Scope: rpc.ScopeCluster}
	var urls []string
	var stops []func()
	var apps []*concord.App
	for i := 0; i < instances; i++ {
		app := concord.New(concord.WithAddr("127.0.0.1:0"), concord.WithDataDir(t.TempDir()), concord.WithLogger(quiet),
			concord.WithCoordOptions(coord.WithClient([]string{node.ClientURL()}, nodetest.ClientAuth())))
		policy := greeterv1concord.GreeterServicePolicy()
		policy.Method(greeterv1connect.GreeterServiceShoutProcedure).RateLimit = limit
		app.RegisterService(policy, func(s *connect.Server) { greeterv1connect.RegisterGreeterServiceHandler(s, greeter.Service{}) })
		actx, acancel := context.WithCancel(context.Background())
		done := make(chan error, 1)
		go func() { done <- app.Run(actx) }()
		if _, err := app.Node(ctx); err != nil {
			acancel()
			t.Fatal(err)
		}
		addr, _ := app.Server().Addr(ctx)
		urls = append(urls, "http://"+addr.String())
		apps = append(apps, app)
		stops = append(stops, func() {
			acancel()
			if err := <-done; err != nil {
				t.Errorf("instance: %v", err)
			}
		})
	}
	defer func() {
		for _, stop := range stops {
			stop()
		}
	}()

	var admitted, rejected, failed atomic.Int64
	client := &http.Client{}
	start := time.Now()
	var wg sync.WaitGroup
	for _, url := range urls {
		for w := 0; w < 4; w++ { // 4 workers per instance: far above 40/s overall
			wg.Add(1)
			go func() {
				defer wg.Done()
				// At least 2 s, and on a machine too loaded to exceed the
				// limit in that time, on until rejections outnumber
				// admissions (at most 10 s): the bound below means
				// something only under excess load.
				more := func() bool {
					d := time.Since(start)
					return d < 2*time.Second || (d < 10*time.Second && rejected.Load() < admitted.Load())
				}
				for i := 0; i < 20000 && more(); i++ {
					res, err := client.Post(url+"/greeter.v1.GreeterService/Shout", "application/json", strings.NewReader(`{"name":"x"}`))
					if err != nil {
						failed.Add(1) // the server may have counted it
						continue
					}
					res.Body.Close()
					switch res.StatusCode {
					case http.StatusOK:
						admitted.Add(1)
					case http.StatusTooManyRequests:
						rejected.Add(1)
					}
				}
			}()
		}
	}
	wg.Wait()
	elapsed := time.Since(start)
	// Slack: the tokens each instance may hold in its pool (one batch of
	// about 100ms of the rate).
	slack := instances * (rate / 10)
	maxAdmitted := int64(float64(rate)*elapsed.Seconds()) + burst + int64(slack)
	minAdmitted := int64(float64(rate) * elapsed.Seconds() / 2)
	t.Logf("admitted %d, rejected %d in %v (bound %d)", admitted.Load(), rejected.Load(), elapsed, maxAdmitted)
	if admitted.Load() > maxAdmitted || admitted.Load() < minAdmitted {
		t.Fatalf("admitted %d in %v across %d instances; want between %d and %d", admitted.Load(), elapsed, instances, minAdmitted, maxAdmitted)
	}
	if rejected.Load() < admitted.Load() {
		t.Fatalf("only %d rejections: the load did not exceed the limit", rejected.Load())
	}
	// The instances' limit status counts the same calls (and perhaps
	// some whose answer the client lost), and every
	// admitted call spent a token borrowed from the store.
	var sAdmitted, sRefused, borrowed uint64
	for _, app := range apps {
		ls := app.Server().LimitStatus()
		if len(ls) != 1 || ls[0].Scope != "cluster" {
			t.Fatalf("limit status %+v", ls)
		}
		sAdmitted, sRefused, borrowed = sAdmitted+ls[0].Admitted, sRefused+ls[0].Refused, borrowed+ls[0].Borrowed
	}
	if sAdmitted < uint64(admitted.Load()) || sRefused < uint64(rejected.Load()) ||
		sAdmitted+sRefused > uint64(admitted.Load()+rejected.Load()+failed.Load()) || borrowed < sAdmitted {
		t.Fatalf("limit status: %d admitted, %d refused, %d tokens borrowed; the callers saw %d admitted, %d rejected",
			sAdmitted, sRefused, borrowed, admitted.Load(), rejected.Load())
	}
}
