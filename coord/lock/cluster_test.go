package lock_test

import (
	"context"
	"fmt"
	"math/rand/v2"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/concordrpc/concord/coord"
	"github.com/concordrpc/concord/coord/lock"
	"github.com/concordrpc/concord/internal/clustertest"
	"github.com/concordrpc/concord/internal/nodetest"
)

// grantRecord is one grant as its holder saw it: held from the
// acknowledgement of the grant until the earlier of the start of its
// release and its lease's deadline (a conservative interval).
type grantRecord struct {
	worker     int
	token      uint64
	start, end time.Time
	lost       bool // the lease's deadline passed before the release began
}

// TestClusterLockInvariants runs contenders for one lock on a 3-node
// cluster of child processes while nodes are killed with SIGKILL and
// restarted, one at a time and then all at once (each fault strikes while a
// holder is in a long hold, so leases are lost while held), and checks
// every grant: no two holders' intervals overlap, and tokens strictly
// increase in grant order, across the failures and the full restart.
func TestClusterLockInvariants(t *testing.T) {
	if testing.Short() {
		t.Skip("starts three node processes")
	}
	c := clustertest.New(t, 3)
	c.Start(t)
	ctx, cancel := context.WithTimeout(t.Context(), 5*time.Minute)
	defer cancel()

	const clients, workersPerClient = 3, 2
	const ttl = 2 * time.Second
	var (
		mu      sync.Mutex
		records []grantRecord
		fails   int
	)
	stop := make(chan struct{})
	longHold := make(chan struct{}, 1) // a worker began a long hold
	var wg sync.WaitGroup
	for ci := range clients {
		client, err := coord.Open(ctx, coord.WithClient(c.URLs(), nodetest.ClientAuth()),
			coord.WithName(fmt.Sprintf("client%d", ci)), quiet())
		if err != nil {
			t.Fatal(err)
		}
		defer client.Close()
		if client.Replicas() != 3 {
			t.Fatalf("client sees %d replicas, want 3", client.Replicas())
		}
		for wi := range workersPerClient {
			worker := ci*workersPerClient + wi
			wg.Add(1)
			go func() {
				defer wg.Done()
				m := lock.NewMutex(lock.FromNode(client), "cluster", lock.WithTTL(ttl))
				for i := 0; i < 100000; i++ {
					select {
					case <-stop:
						return
					default:
					}
					lctx, lcancel := context.WithTimeout(ctx, 15*time.Second)
					token, err := m.Lock(lctx)
					lcancel()
					if err != nil {
						mu.Lock()
						fails++
						mu.Unlock()
						time.Sleep(50 * time.Millisecond)
						continue
					}
					start := time.Now()
					hold := time.Duration(rand.N(20)) * time.Millisecond
					if rand.N(8) == 0 {
						hold = 4 * time.Second // past several keepalives
						select {
						case longHold <- struct{}{}:
						default:
						}
					}
					select {
					case <-time.After(hold):
					case <-m.Done(): // lease lost: the holder stops
					}
					end, lost := time.Now(), false
					if d := m.Deadline(); d.Before(end) {
						end, lost = d, true
					}
					uctx, ucancel := context.WithTimeout(ctx, 5*time.Second)
					_ = m.Unlock(uctx) // may find the lease lost: ErrNotHeld
					ucancel()
					mu.Lock()
					records = append(records, grantRecord{worker: worker, token: token, start: start, end: end, lost: lost})
					mu.Unlock()
				}
			}()
		}
	}
	count := func() int {
		mu.Lock()
		defer mu.Unlock()
		return len(records)
	}
	// progress waits until grants resume, failing after within.
	progress := func(what string, within time.Duration) {
		t.Helper()
		before := count()
		deadline := time.Now().Add(within)
		for i := 0; count() < before+10; i++ {
			if time.Now().After(deadline) || i > 10000 {
				t.Fatalf("no grants within %v %s", within, what)
			}
			time.Sleep(10 * time.Millisecond)
		}
	}

	// whileHolding waits until a worker begins a long hold, so that the
	// next fault strikes a holder mid-hold.
	whileHolding := func() {
		t.Helper()
		select {
		case <-longHold:
		default:
		}
		select {
		case <-longHold:
		case <-time.After(60 * time.Second):
			t.Fatal("no long hold within 60s")
		}
	}
	progress("at start", 30*time.Second)
	for _, victim := range c.Nodes {
		whileHolding()
		victim.Kill9()
		time.Sleep(3 * time.Second)
		progress("after killing "+victim.Name, 30*time.Second)
		c.Restart(t, victim)
		progress("after restarting "+victim.Name, 30*time.Second)
	}
	whileHolding()
	beforeFull := count()
	for _, n := range c.Nodes {
		n.Kill9()
	}
	c.Start(t)
	progress("after a full restart", 60*time.Second)
	time.Sleep(2 * time.Second)
	close(stop)
	done := make(chan struct{})
	go func() { wg.Wait(); close(done) }()
	select {
	case <-done:
	case <-time.After(60 * time.Second):
		t.Fatal("workers did not stop within 60s")
	}

	mu.Lock()
	defer mu.Unlock()
	lost := 0
	for _, r := range records {
		if r.lost {
			lost++
		}
	}
	t.Logf("%d grants (%d after the full restart, %d whose lease was lost while held), %d failed Lock calls",
		len(records), len(records)-beforeFull, lost, fails)
	if err := checkGrants(records); err != nil {
		t.Fatal(err)
	}
	if lost == 0 {
		t.Fatal("no lease was lost while held: the faults did not exercise expiry")
	}
}

// checkGrants is the invariant checker: sorted by start, every interval
// begins after every earlier one ended, and tokens strictly increase.
func checkGrants(records []grantRecord) error {
	records = slices.Clone(records)
	slices.SortFunc(records, func(a, b grantRecord) int { return a.start.Compare(b.start) })
	seen := map[uint64]bool{}
	var last grantRecord // the record with the latest end so far
	for i, r := range records {
		if seen[r.token] {
			return fmt.Errorf("token %d granted twice", r.token)
		}
		seen[r.token] = true
		if i > 0 {
			prev := records[i-1]
			if r.token <= prev.token {
				return fmt.Errorf("worker %d got token %d after worker %d got token %d", r.worker, r.token, prev.worker, prev.token)
			}
			if r.start.Before(last.end) {
				return fmt.Errorf("worker %d held the lock (token %d) from %s while worker %d (token %d) held it until %s",
					r.worker, r.token, r.start.Format(time.StampMicro), last.worker, last.token, last.end.Format(time.StampMicro))
			}
		}
		if i == 0 || r.end.After(last.end) {
			last = r
		}
	}
	return nil
}

// TestCheckGrantsCatchesViolations checks the checker.
func TestCheckGrantsCatchesViolations(t *testing.T) {
	t0 := time.Now()
	ms := func(n int) time.Time { return t0.Add(time.Duration(n) * time.Millisecond) }
	if err := checkGrants([]grantRecord{{1, 9, ms(10), ms(20), false}, {0, 5, ms(0), ms(10), false}}); err != nil {
		t.Fatal(err)
	}
	for name, bad := range map[string][]grantRecord{
		"overlap":        {{0, 5, ms(0), ms(10), false}, {1, 9, ms(5), ms(20), false}},
		"nested overlap": {{0, 5, ms(0), ms(30), false}, {1, 9, ms(10), ms(15), false}, {2, 11, ms(20), ms(40), false}},
		"token order":    {{0, 9, ms(0), ms(10), false}, {1, 5, ms(10), ms(20), false}},
		"duplicate":      {{0, 5, ms(0), ms(10), false}, {1, 5, ms(10), ms(20), false}},
	} {
		if err := checkGrants(bad); err == nil {
			t.Errorf("%s: not caught", name)
		}
	}
}
