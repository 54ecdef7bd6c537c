package registry_test

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/concordrpc/concord/coord"
	"github.com/concordrpc/concord/coord/lock"
	"github.com/concordrpc/concord/coord/registry"
	"github.com/concordrpc/concord/coord/txlog"
	"github.com/concordrpc/concord/internal/nodetest"
)

func TestRegisterResolveDeregister(t *testing.T) {
	t.Parallel()
	n := openNode(t)
	res := resolver(t, n)
	const svc = "greeter.v1.Greeter"
	a := register(t, n, registry.Registration{Service: svc, ID: "a", BaseURL: "http://127.0.0.1:1001", Zone: "z1", Ready: true, Metadata: map[string]string{"k": "v"}})
	register(t, n, registry.Registration{Service: svc, ID: "b", BaseURL: "http://127.0.0.1:1002", Ready: true})
	// A service whose name is a prefix of another's sees none of its
	// instances.
	register(t, n, registry.Registration{Service: "greeter", ID: "c", BaseURL: "http://127.0.0.1:1003", Ready: true})

	insts, err := res.Resolve(within(t, 5*time.Second), svc)
	if err != nil {
		t.Fatal(err)
	}
	if len(insts) < 2 {
		// The view may have loaded between the two registrations.
		await(t, 2*time.Second, "both instances", func() bool { return len(resolveNow(res, svc)) == 2 })
		insts, _ = res.Resolve(t.Context(), svc)
	}
	if got := ids(insts); len(got) != 2 || got[0] != "a" || got[1] != "b" {
		t.Fatalf("Resolve = %v, want [a b]", got)
	}
	if in := insts[0]; in.BaseURL != "http://127.0.0.1:1001" || in.Zone != "z1" || in.Metadata["k"] != "v" {
		t.Fatalf("instance a = %+v", in)
	}
	if got := resolveNow(res, "greeter"); len(got) != 1 || got[0] != "c" {
		t.Fatalf("Resolve(greeter) = %v, want [c]", got)
	}

	// Heartbeats do not change the view: Resolve keeps returning the same
	// slice.
	time.Sleep(a.TTL()/3 + 500*time.Millisecond)
	again, _ := res.Resolve(t.Context(), svc)
	if &again[0] != &insts[0] {
		t.Fatal("Resolve returned a new slice although nothing changed")
	}

	services, err := res.Services(within(t, 5*time.Second))
	if err != nil || len(services) != 2 || services[0] != "greeter" || services[1] != svc {
		t.Fatalf("Services = %v, %v", services, err)
	}
	regs, err := res.Instances(within(t, 5*time.Second), svc)
	if err != nil || len(regs) != 2 || regs[0].ID != "a" || regs[0].Service != svc || !regs[0].Ready {
		t.Fatalf("Instances = %+v, %v", regs, err)
	}

	start := time.Now()
	if err := a.Deregister(within(t, 5*time.Second)); err != nil {
		t.Fatal(err)
	}
	took := await(t, time.Second, "deregistered instance gone", func() bool {
		got := resolveNow(res, svc)
		return len(got) == 1 && got[0] == "b"
	})
	t.Logf("deregistration seen after %v", time.Since(start))
	_ = took
	if err := a.Deregister(t.Context()); err != nil {
		t.Fatalf("second Deregister: %v", err)
	}
	if err := a.SetReady(t.Context(), false); !errors.Is(err, registry.ErrClosed) {
		t.Fatalf("SetReady after Deregister = %v, want ErrClosed", err)
	}
	// The key is gone for good: nothing re-registers it.
	time.Sleep(a.TTL() / 2)
	if got := resolveNow(res, svc); len(got) != 1 {
		t.Fatalf("after Deregister Resolve = %v", got)
	}
}

// Resolve on a loaded view is a map read: no allocation, and the same
// slice across heartbeats and full re-reads. Not parallel: AllocsPerRun
// counts every goroutine's allocations.
func TestResolveHotPath(t *testing.T) {
	n := openNode(t)
	res := resolver(t, n, registry.ResolverRelistInterval(200*time.Millisecond))
	register(t, n, registry.Registration{Service: "hot", ID: "a", BaseURL: "http://127.0.0.1:1", Ready: true}, registry.WithTTL(time.Second))
	ctx := within(t, 5*time.Second)
	first, err := res.Resolve(ctx, "hot")
	if err != nil {
		t.Fatal(err)
	}
	if allocs := testing.AllocsPerRun(1000, func() { _, _ = res.Resolve(ctx, "hot") }); allocs != 0 {
		t.Fatalf("Resolve allocates %v times per call", allocs)
	}
	time.Sleep(time.Second) // 3 heartbeats, 5 re-reads
	again, err := res.Resolve(ctx, "hot")
	if err != nil || &again[0] != &first[0] {
		t.Fatalf("Resolve returned a new slice (%v) although nothing changed", err)
	}
}

// An instance that stops heartbeating without deregistering (its process
// died) leaves every resolver's view within TTL + 1s.
func TestStoppedInstanceExpires(t *testing.T) {
	t.Parallel()
	n := openNode(t)
	res := resolver(t, n)
	const svc, ttl = "expiry", 2 * time.Second
	r := register(t, n, registry.Registration{Service: svc, ID: "x", BaseURL: "http://127.0.0.1:1", Ready: true}, registry.WithTTL(ttl))
	if _, err := res.Resolve(within(t, 5*time.Second), svc); err != nil {
		t.Fatal(err)
	}
	// Heartbeats keep it alive well past its TTL.
	time.Sleep(2*ttl + 500*time.Millisecond)
	if got := resolveNow(res, svc); len(got) != 1 {
		t.Fatalf("while heartbeating: Resolve = %v", got)
	}
	if err := r.Close(); err != nil {
		t.Fatal(err)
	}
	stopped := time.Now()
	await(t, ttl+time.Second, "expired instance gone", func() bool { return resolveNow(res, svc) == nil })
	t.Logf("gone %v after the last heartbeat stopped (TTL %v)", time.Since(stopped), ttl)
	if r.Reregistrations() != 0 {
		t.Fatalf("Reregistrations = %d", r.Reregistrations())
	}
}

// A registration deleted or purged behind the registrar's back (an
// operator, a bug elsewhere) is registered again by the next heartbeat.
func TestDeletedBehindBackReregisters(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name string
		del  func(ctx context.Context, kv jetstream.KeyValue, key string) error
	}{
		{"delete", func(ctx context.Context, kv jetstream.KeyValue, key string) error { return kv.Delete(ctx, key) }},
		{"purge", func(ctx context.Context, kv jetstream.KeyValue, key string) error { return kv.Purge(ctx, key) }},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			n := openNode(t)
			res := resolver(t, n)
			const svc, ttl = "deleted", 3 * time.Second
			r := register(t, n, registry.Registration{Service: svc, ID: "x", BaseURL: "http://127.0.0.1:1", Ready: true}, registry.WithTTL(ttl))
			if _, err := res.Resolve(within(t, 5*time.Second), svc); err != nil {
				t.Fatal(err)
			}
			kv, err := n.JetStream().KeyValue(within(t, 5*time.Second), coord.BucketRegistry)
			if err != nil {
				t.Fatal(err)
			}
			if err := tc.del(within(t, 5*time.Second), kv, r.Key()); err != nil {
				t.Fatal(err)
			}
			deleted := time.Now()
			await(t, time.Second, "deleted instance gone from the view", func() bool { return resolveNow(res, svc) == nil })
			took := await(t, ttl/3+time.Second, "instance registered again", func() bool { return len(resolveNow(res, svc)) == 1 })
			t.Logf("registered again %v after the delete", time.Since(deleted))
			_ = took
			if got := r.Reregistrations(); got != 1 {
				t.Fatalf("Reregistrations = %d, want 1", got)
			}
			// The new lease is refreshed like the first.
			time.Sleep(ttl + ttl/2)
			if got := resolveNow(res, svc); len(got) != 1 || r.Reregistrations() != 1 {
				t.Fatalf("after a TTL: Resolve = %v, Reregistrations = %d", got, r.Reregistrations())
			}
			e, err := kv.Get(within(t, 5*time.Second), r.Key())
			if err != nil {
				t.Fatal(err)
			}
			if err := r.Deregister(within(t, 5*time.Second)); err != nil {
				t.Fatal(err)
			}
			if _, err := kv.Get(within(t, 5*time.Second), r.Key()); !errors.Is(err, jetstream.ErrKeyNotFound) {
				t.Fatalf("after Deregister: Get = %v (was revision %d)", err, e.Revision())
			}
		})
	}
}

// listeningNode opens an embedded node that accepts NATS clients on
// 127.0.0.1 (port -1 picks one), closed at cleanup.
func listeningNode(t *testing.T, dir, addr string) *coord.Node {
	t.Helper()
	n, err := coord.Open(within(t, 20*time.Second), coord.WithDataDir(dir), coord.WithListen(addr), nodetest.ListenAuth(), quiet())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = n.Close() })
	return n
}

// clientNode connects to url in client mode, closed at cleanup.
func clientNode(t *testing.T, url string) *coord.Node {
	t.Helper()
	n, err := coord.Open(within(t, 20*time.Second), coord.WithClient([]string{url}, nodetest.ClientAuth()), coord.WithName("client"), quiet())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = n.Close() })
	return n
}

// An instance whose connection to the coordination node dies (its process
// crashed) leaves other processes' views within TTL + 1s; the registrar
// notices that its node closed and stops.
func TestConnectionLossExpires(t *testing.T) {
	t.Parallel()
	srv := listeningNode(t, t.TempDir(), "127.0.0.1:-1")
	cli := clientNode(t, srv.ClientURL())
	res := resolver(t, srv)
	const svc, ttl = "conn-loss", 2 * time.Second
	r := register(t, cli, registry.Registration{Service: svc, ID: "x", BaseURL: "http://127.0.0.1:1", Ready: true}, registry.WithTTL(ttl))
	if _, err := res.Resolve(within(t, 5*time.Second), svc); err != nil {
		t.Fatal(err)
	}
	_ = cli.Close()
	closed := time.Now()
	await(t, ttl+time.Second, "instance of a dead connection gone", func() bool { return resolveNow(res, svc) == nil })
	t.Logf("gone %v after its connection closed (TTL %v)", time.Since(closed), ttl)
	select {
	case <-r.Done():
	case <-time.After(ttl):
		t.Fatal("registrar still running on a closed node")
	}
	if !errors.Is(r.Err(), coord.ErrClosed) {
		t.Fatalf("Err = %v, want coord.ErrClosed", r.Err())
	}
}

// A client may resolve before any instance exists: Resolve waits, woken by
// the watch, and returns the instance as soon as it registers; it fails
// fast with ResolverFailFast, and wraps ctx.Err() when ctx ends first.
func TestResolveBeforeRegistration(t *testing.T) {
	t.Parallel()
	n := openNode(t)
	const svc = "late"

	t.Run("fail fast", func(t *testing.T) {
		res := resolver(t, n, registry.ResolverFailFast())
		start := time.Now()
		_, err := res.Resolve(within(t, 10*time.Second), svc)
		if !errors.Is(err, registry.ErrNoInstances) || errors.Is(err, context.DeadlineExceeded) {
			t.Fatalf("Resolve = %v, want ErrNoInstances at once", err)
		}
		if took := time.Since(start); took > 2*time.Second {
			t.Fatalf("failing fast took %v", took)
		}
	})
	t.Run("deadline", func(t *testing.T) {
		res := resolver(t, n)
		_, err := res.Resolve(within(t, 200*time.Millisecond), svc)
		if !errors.Is(err, registry.ErrNoInstances) || !errors.Is(err, context.DeadlineExceeded) {
			t.Fatalf("Resolve = %v, want ErrNoInstances and DeadlineExceeded", err)
		}
	})
	t.Run("closed while waiting", func(t *testing.T) {
		res := resolver(t, n)
		errc := make(chan error, 1)
		go func() {
			_, err := res.Resolve(within(t, 10*time.Second), svc)
			errc <- err
		}()
		time.Sleep(100 * time.Millisecond)
		_ = res.Close()
		select {
		case err := <-errc:
			if !errors.Is(err, registry.ErrClosed) {
				t.Fatalf("Resolve = %v, want ErrClosed", err)
			}
		case <-time.After(5 * time.Second):
			t.Fatal("Resolve still waiting after Close")
		}
		if _, err := res.Resolve(t.Context(), svc); !errors.Is(err, registry.ErrClosed) {
			t.Fatalf("Resolve after Close = %v, want ErrClosed", err)
		}
	})
	t.Run("woken by registration", func(t *testing.T) {
		res := resolver(t, n)
		type result struct {
			ids []string
			err error
			at  time.Time
		}
		done := make(chan result, 1)
		go func() {
			insts, err := res.Resolve(within(t, 10*time.Second), svc)
			done <- result{ids(insts), err, time.Now()}
		}()
		time.Sleep(300 * time.Millisecond) // Resolve is waiting
		register(t, n, registry.Registration{Service: svc, ID: "x", BaseURL: "http://127.0.0.1:1", Ready: true})
		registered := time.Now()
		select {
		case r := <-done:
			if r.err != nil || len(r.ids) != 1 || r.ids[0] != "x" {
				t.Fatalf("Resolve = %v, %v", r.ids, r.err)
			}
			t.Logf("woken %v after the registration", r.at.Sub(registered))
			if d := r.at.Sub(registered); d > time.Second {
				t.Fatalf("woken %v after the registration", d)
			}
		case <-time.After(5 * time.Second):
			t.Fatal("Resolve not woken by the registration")
		}
	})
}

// Readiness hides and shows an instance without deregistering it.
func TestReadiness(t *testing.T) {
	t.Parallel()
	n := openNode(t)
	res := resolver(t, n, registry.ResolverFailFast())
	const svc = "ready"
	r := register(t, n, registry.Registration{Service: svc, ID: "x", BaseURL: "http://127.0.0.1:1"})
	if _, err := res.Resolve(within(t, 5*time.Second), svc); !errors.Is(err, registry.ErrNoInstances) {
		t.Fatalf("unready instance: Resolve = %v, want ErrNoInstances", err)
	}
	regs, err := res.Instances(within(t, 5*time.Second), svc)
	if err != nil || len(regs) != 1 || regs[0].Ready {
		t.Fatalf("Instances = %+v, %v; want one unready", regs, err)
	}
	for i, ready := range []bool{true, false, true} {
		if err := r.SetReady(within(t, 5*time.Second), ready); err != nil {
			t.Fatal(err)
		}
		want := 0
		if ready {
			want = 1
		}
		took := await(t, time.Second, "readiness seen", func() bool { return len(resolveNow(res, svc)) == want })
		t.Logf("step %d: ready=%v seen after %v", i, ready, took)
		if r.Registration().Ready != ready {
			t.Fatalf("Registration().Ready = %v", r.Registration().Ready)
		}
	}
}

// Instance IDs are unique among live instances: a second registrar for a
// live ID fails with ErrDuplicateID, while a crashed predecessor's ID is
// taken over once its lease lapses.
func TestDuplicateID(t *testing.T) {
	t.Parallel()
	n := openNode(t)
	const ttl = 2 * time.Second
	inst := registry.Registration{Service: "dup", ID: "fixed", BaseURL: "http://127.0.0.1:1", Ready: true}
	first := register(t, n, inst, registry.WithTTL(ttl))

	start := time.Now()
	_, err := registry.Register(within(t, 10*time.Second), n, inst, registry.WithTTL(ttl), registry.WithLogger(discard()))
	if !errors.Is(err, registry.ErrDuplicateID) {
		t.Fatalf("second Register = %v, want ErrDuplicateID", err)
	}
	t.Logf("live duplicate detected after %v", time.Since(start))
	if took := time.Since(start); took > ttl+3*time.Second {
		t.Fatalf("detecting a live duplicate took %v", took)
	}
	if first.Reregistrations() != 0 {
		t.Fatal("the live holder lost its key")
	}

	// The holder crashes (stops without deregistering); a successor with
	// the same ID registers once the lease lapses.
	_ = first.Close()
	start = time.Now()
	second := register(t, n, inst, registry.WithTTL(ttl))
	t.Logf("successor registered %v after the crash", time.Since(start))
	if took := time.Since(start); took > ttl+3*time.Second {
		t.Fatalf("taking over a crashed ID took %v", took)
	}
	if err := second.Deregister(within(t, 5*time.Second)); err != nil {
		t.Fatal(err)
	}
}

func TestInvalidRegistration(t *testing.T) {
	t.Parallel()
	n := openNode(t)
	ok := registry.Registration{Service: "svc", BaseURL: "http://127.0.0.1:1"}
	for _, tc := range []struct {
		name string
		edit func(*registry.Registration)
		opts []registry.Option
	}{
		{"empty service", func(g *registry.Registration) { g.Service = "" }, nil},
		{"long service", func(g *registry.Registration) { g.Service = strings.Repeat("s", 256) }, nil},
		{"long ID", func(g *registry.Registration) { g.ID = strings.Repeat("i", 256) }, nil},
		{"no URL", func(g *registry.Registration) { g.BaseURL = "" }, nil},
		{"relative URL", func(g *registry.Registration) { g.BaseURL = "/x" }, nil},
		{"bad scheme", func(g *registry.Registration) { g.BaseURL = "ftp://h" }, nil},
		{"huge metadata", func(g *registry.Registration) { g.Metadata = map[string]string{"k": strings.Repeat("v", 40<<10)} }, nil},
		{"short TTL", nil, []registry.Option{registry.WithTTL(500 * time.Millisecond)}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			g := ok
			if tc.edit != nil {
				tc.edit(&g)
			}
			_, err := registry.Register(within(t, 5*time.Second), n, g, tc.opts...)
			if !errors.Is(err, registry.ErrInvalidRegistration) {
				t.Fatalf("Register = %v, want ErrInvalidRegistration", err)
			}
		})
	}
	res := resolver(t, n)
	if _, err := res.Resolve(t.Context(), ""); !errors.Is(err, registry.ErrInvalidRegistration) {
		t.Fatalf("Resolve(\"\") = %v", err)
	}

	// Names with any bytes work, and a generated ID is unique.
	odd := registry.Registration{Service: "a.b-c_d=e f/é", BaseURL: "https://h:1", Ready: true}
	r1 := register(t, n, odd, registry.WithTTL(1500*time.Millisecond))
	r2 := register(t, n, odd)
	if a, b := r1.Registration().ID, r2.Registration().ID; a == "" || a == b {
		t.Fatalf("generated IDs %q and %q", a, b)
	}
	if r1.TTL() != 2*time.Second {
		t.Fatalf("TTL = %v, want 1.5s rounded up to 2s", r1.TTL())
	}
	insts, err := res.Resolve(within(t, 5*time.Second), odd.Service)
	if err != nil {
		t.Fatal(err)
	}
	if len(insts) < 2 {
		await(t, time.Second, "both instances", func() bool { return len(resolveNow(res, odd.Service)) == 2 })
	}
	services, err := res.Services(within(t, 5*time.Second))
	if err != nil || len(services) != 1 || services[0] != odd.Service {
		t.Fatalf("Services = %q, %v", services, err)
	}
}

// When the node closes under a resolver, waiting Resolve calls fail with
// coord.ErrClosed instead of waiting for their deadline.
func TestResolverNodeClosed(t *testing.T) {
	t.Parallel()
	n, err := coord.Open(within(t, 20*time.Second), coord.WithDataDir(t.TempDir()), quiet())
	if err != nil {
		t.Fatal(err)
	}
	res := resolver(t, n)
	errc := make(chan error, 1)
	go func() {
		_, err := res.Resolve(within(t, 30*time.Second), "none")
		errc <- err
	}()
	time.Sleep(200 * time.Millisecond)
	_ = n.Close()
	select {
	case err := <-errc:
		if !errors.Is(err, coord.ErrClosed) || !errors.Is(err, registry.ErrNoInstances) {
			t.Fatalf("Resolve = %v, want ErrNoInstances and coord.ErrClosed", err)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("Resolve still waiting on a closed node")
	}
}

// TestStatusIsCheap reads the status of a registry with more and more
// services, with a finished and an unfinished TCC transaction in the log:
// every read costs the same few JetStream API requests and no consumer is
// ever created, on any stream (an HTTP GET of status used to create and
// delete a consumer per service, 18 requests for a small registry; the
// transaction part then left an ordered consumer on the log per read).
func TestStatusIsCheap(t *testing.T) {
	n := openNode(t)
	res := resolver(t, n)
	ctx := within(t, 30*time.Second)
	js := n.JetStream()

	// One finished transaction (its summary) and one in flight, so that
	// both reads of the transaction part have something to return.
	l := txlog.Open(n)
	done, open := txRecord(), txRecord()
	if err := l.Begin(ctx, done); err != nil {
		t.Fatal(err)
	}
	done.State = txlog.StateConfirmed
	if err := l.Finish(ctx, done, time.Minute); err != nil {
		t.Fatal(err)
	}
	if err := l.Begin(ctx, open); err != nil {
		t.Fatal(err)
	}
	await(t, 5*time.Second, "the finished transaction's summary", func() bool { // published without waiting
		_, fin, err := l.List(ctx, 1)
		return err == nil && len(fin) == 1
	})
	// A held lock, so that the locks part has something to list.
	mu := lock.NewMutex(lock.FromNode(n), "cheap")
	if _, err := mu.Lock(ctx); err != nil {
		t.Fatal(err)
	}
	defer mu.Unlock(context.Background())

	consumers := func() map[string]int {
		t.Helper()
		out := map[string]int{}
		streams := js.ListStreams(ctx)
		for info := range streams.Info() {
			out[info.Config.Name] = info.State.Consumers
		}
		if err := streams.Err(); err != nil {
			t.Fatal(err)
		}
		return out
	}
	apiCalls := func() uint64 {
		t.Helper()
		info, err := js.AccountInfo(ctx)
		if err != nil {
			t.Fatal(err)
		}
		return info.API.Total
	}
	initial := consumers()
	if initial[coord.StreamTxLog] != 0 || initial["KV_"+coord.BucketRegistry] != 0 {
		t.Fatalf("consumers before any status read: %v", initial)
	}
	var costs []uint64
	for round, services := range []int{1, 4, 8, 0, 0} {
		for i := range services {
			register(t, n, registry.Registration{Service: fmt.Sprintf("svc%d-%d", round, i), ID: "a", BaseURL: "http://127.0.0.1:1", Ready: true})
		}
		before := apiCalls()
		st, err := registry.ReadStatus(ctx, n, res)
		if err != nil {
			t.Fatal(err)
		}
		costs = append(costs, apiCalls()-before-1) // the second AccountInfo counts itself
		listed := 0
		for _, s := range st.Services {
			listed += len(s.Instances)
		}
		if want := []int{1, 5, 13, 13, 13}[round]; listed != want {
			t.Fatalf("round %d: status lists %d instances, want %d", round, listed, want)
		}
		tx := st.Transactions
		if tx == nil || tx.Unknown != "" || len(tx.InFlight) != 1 || tx.InFlight[0].ID != open.ID ||
			len(tx.Finished) != 1 || tx.Finished[0].ID != done.ID || tx.Finished[0].State != txlog.StateConfirmed {
			t.Fatalf("round %d: transactions %+v, want %s in flight and %s finished", round, tx, open.ID, done.ID)
		}
		if lk := st.Locks; lk == nil || lk.Unknown != "" || len(lk.Held) != 1 || lk.Held[0].Name != "cheap" {
			t.Fatalf("round %d: locks %+v, want the held lock", round, lk)
		}
		if got := consumers(); !maps.Equal(got, initial) {
			t.Fatalf("round %d: consumers per stream %v after a status read, %v before", round, got, initial)
		}
	}
	// 8 stream infos (coord.Node.Status), the transaction log's stream
	// info, and the messaging part's 2 stream infos and 1 consumer listing
	// (msgstatus.Read): 12. The batched direct reads of the registry, of
	// the log and of the two lock buckets are not API requests. A heartbeat that happens to read its
	// key may add one. Per-service reads would cost 9 services' worth more
	// in the third round; the log's ordered consumer cost 5 more.
	t.Logf("JetStream API requests per status read: %v", costs)
	for _, c := range costs {
		if c > 13 {
			t.Fatalf("status reads cost %v JetStream requests; want at most 13 each", costs)
		}
	}
}

// txRecord returns a new trying transaction of one branch.
func txRecord() *txlog.Record {
	now := time.Now()
	return &txlog.Record{
		ID: txlog.NewID(), State: txlog.StateTrying, Created: now, Deadline: now.Add(time.Minute),
		Branches: []txlog.Branch{{ID: "b1", Service: "s", Try: "/x.S/Try", Confirm: "/x.S/Confirm", Cancel: "/x.S/Cancel"}},
	}
}

// TestDeregisterSparesSuccessor: a registrar whose key was taken over by
// another registrar with the same ID (its own lease was lost: deleted
// here, as an expiry during a pause would) must not delete the
// successor's registration when it deregisters.
func TestDeregisterSparesSuccessor(t *testing.T) {
	t.Parallel()
	n := openNode(t)
	const ttl = 9 * time.Second // heartbeats every 3s: the takeover happens between two
	inst := registry.Registration{Service: "succ", ID: "fixed", BaseURL: "http://127.0.0.1:1", Ready: true}
	first := register(t, n, inst, registry.WithTTL(ttl))
	kv, err := n.JetStream().KeyValue(within(t, 5*time.Second), coord.BucketRegistry)
	if err != nil {
		t.Fatal(err)
	}
	if err := kv.Delete(within(t, 5*time.Second), first.Key()); err != nil {
		t.Fatal(err)
	}
	succ := inst
	succ.BaseURL = "http://127.0.0.1:2"
	second := register(t, n, succ, registry.WithTTL(ttl))
	if err := first.Deregister(within(t, 5*time.Second)); err != nil {
		t.Fatal(err)
	}
	e, err := kv.Get(within(t, 5*time.Second), second.Key())
	if err != nil {
		t.Fatalf("the successor's registration is gone after the predecessor deregistered: %v", err)
	}
	if !strings.Contains(string(e.Value()), "127.0.0.1:2") {
		t.Fatalf("registration after the predecessor deregistered: %s", e.Value())
	}
}
