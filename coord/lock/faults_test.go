package lock_test

import (
	"bufio"
	"context"
	"errors"
	"syscall"

	"io"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/concordrpc/concord/coord"
	"github.com/concordrpc/concord/coord/localstore"
	"github.com/concordrpc/concord/coord/lock"
	"github.com/concordrpc/concord/internal/nodetest"
)

// TestCrashedHolderFreedWithinTTL kills -9 a holder's process and checks
// that a waiting contender gets the lock within the TTL (2s) plus a margin,
// with a higher token.
func TestCrashedHolderFreedWithinTTL(t *testing.T) {
	if testing.Short() {
		t.Skip("starts a holder process")
	}
	const ttl, margin = 2 * time.Second, 1500 * time.Millisecond
	n := openNode(t, coord.WithListen("127.0.0.1:-1"), nodetest.ListenAuth())
	ctx := within(t, 60*time.Second)

	cmd := exec.Command(os.Args[0], "-test.run=^$")
	cmd.Env = append(os.Environ(), holderEnv+"=1", "HOLDER_URL="+n.ClientURL(), "HOLDER_LOCK=crash")
	cmd.Stderr = os.Stderr
	out, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	killed := false
	kill := func() {
		if !killed {
			killed = true
			_ = cmd.Process.Kill() // SIGKILL
			_ = cmd.Wait()
		}
	}
	t.Cleanup(kill)
	line := make(chan string, 1)
	go func() {
		l, _ := bufio.NewReader(out).ReadString('\n')
		line <- l
		_, _ = io.Copy(io.Discard, out)
	}()
	var held uint64
	select {
	case l := <-line:
		if held, err = strconv.ParseUint(strings.TrimSpace(strings.TrimPrefix(l, "LOCKED ")), 10, 64); err != nil {
			t.Fatalf("holder said %q", l)
		}
	case <-time.After(30 * time.Second):
		t.Fatal("holder did not lock within 30s")
	}

	waiter := lock.NewMutex(lock.FromNode(n), "crash", lock.WithTTL(ttl))
	got := make(chan error, 1)
	var token uint64
	go func() {
		var err error
		token, err = waiter.Lock(ctx)
		got <- err
	}()
	// The holder keeps the lock alive past several TTLs.
	select {
	case err := <-got:
		t.Fatalf("waiter got the lock from a live holder: %v", err)
	case <-time.After(2 * ttl):
	}
	kill()
	start := time.Now()
	select {
	case err := <-got:
		if err != nil {
			t.Fatal(err)
		}
	case <-time.After(ttl + margin):
		t.Fatalf("waiter did not get the lock within TTL %v + %v of the holder's crash", ttl, margin)
	}
	t.Logf("lock passed %v after the crash (TTL %v)", time.Since(start).Round(time.Millisecond), ttl)
	if token <= held {
		t.Fatalf("token %d after the crashed holder's %d", token, held)
	}
	if err := waiter.Unlock(ctx); err != nil {
		t.Fatal(err)
	}
}

// TestStoppedProcessLosesLock stops a holder's process with SIGSTOP past
// its lease (as a VM freeze or a long GC pause would): a contender gets
// the lock with a higher token, the guard that saw that token refuses the
// paused holder's token, and once resumed (SIGCONT) the holder's Valid
// fails at once and its Done closes.
func TestStoppedProcessLosesLock(t *testing.T) {
	if testing.Short() {
		t.Skip("starts a holder process")
	}
	const ttl = 2 * time.Second
	n := openNode(t, coord.WithListen("127.0.0.1:-1"), nodetest.ListenAuth())
	_, guard := newGuard(t, n)
	ctx := within(t, 60*time.Second)

	cmd := exec.Command(os.Args[0], "-test.run=^$")
	cmd.Env = append(os.Environ(), holderEnv+"=1", "HOLDER_URL="+n.ClientURL(), "HOLDER_LOCK=stopped")
	cmd.Stderr = os.Stderr
	stdin, err := cmd.StdinPipe()
	if err != nil {
		t.Fatal(err)
	}
	out, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		_ = cmd.Process.Signal(syscall.SIGCONT)
		_ = cmd.Process.Kill()
		_ = cmd.Wait()
	})
	lines := make(chan string, 8)
	go func() {
		sc := bufio.NewScanner(out)
		for sc.Scan() {
			lines <- sc.Text()
		}
		close(lines)
	}()
	next := func(prefix string) string {
		t.Helper()
		select {
		case l := <-lines:
			if !strings.HasPrefix(l, prefix) {
				t.Fatalf("holder said %q, want %s...", l, prefix)
			}
			return strings.TrimSpace(strings.TrimPrefix(l, prefix))
		case <-time.After(30 * time.Second):
			t.Fatalf("holder said nothing for 30s (want %s)", prefix)
			return ""
		}
	}
	held, err := strconv.ParseUint(next("LOCKED "), 10, 64)
	if err != nil {
		t.Fatal(err)
	}
	if err := guard.Check(ctx, "stopped", held); err != nil { // the holder's write before the pause
		t.Fatal(err)
	}

	if err := cmd.Process.Signal(syscall.SIGSTOP); err != nil {
		t.Fatal(err)
	}
	stopped := time.Now()
	contender := lock.NewMutex(lock.FromNode(n), "stopped", lock.WithTTL(ttl))
	token, err := contender.Lock(ctx)
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("contender locked %v after the SIGSTOP (TTL %v)", time.Since(stopped).Round(time.Millisecond), ttl)
	if token <= held {
		t.Fatalf("contender's token %d, paused holder's %d", token, held)
	}
	if err := guard.Check(ctx, "stopped", token); err != nil {
		t.Fatal(err)
	}

	if err := cmd.Process.Signal(syscall.SIGCONT); err != nil {
		t.Fatal(err)
	}
	if _, err := io.WriteString(stdin, "CHECK\n"); err != nil {
		t.Fatal(err)
	}
	// A write the resumed holder sends before it notices is refused.
	if err := guard.Check(ctx, "stopped", held); !errors.Is(err, lock.ErrStaleToken) {
		t.Fatalf("paused holder's write: %v, want ErrStaleToken", err)
	}
	if v := next("VALID "); !strings.Contains(v, lock.ErrLeaseLost.Error()) {
		t.Fatalf("resumed holder's Valid: %s, want ErrLeaseLost", v)
	}
	next("DONE")
	if err := contender.Unlock(ctx); err != nil {
		t.Fatal(err)
	}
}

// TestPausedHolderFencedByGuard stops only the holder's keepalive, through
// a test hook (SetPausedForTest), past its TTL; the rest of the process
// (the test's goroutine, the holder's NATS connection) keeps running, so
// this is a stalled keepalive, not a paused process. Another contender
// gets the lock with a higher token and writes, and the stalled holder's
// later write, which it makes still believing it holds the lock, is
// refused by the Guard. A real pause of the whole process (SIGSTOP of a
// child) is TestStoppedProcessLosesLock.
func TestPausedHolderFencedByGuard(t *testing.T) {
	n := openNode(t)
	ctx := within(t, 30*time.Second)
	store, err := localstore.Open(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	defer store.Close()
	guard := lock.NewGuard(store, lock.FromNode(n))
	write := func(token uint64, value string) error {
		return guard.Update(ctx, "acct/7", token, func(tx *localstore.Tx) error {
			return tx.Set([]byte("acct/7/balance"), []byte(value))
		})
	}

	a := lock.NewMutex(lock.FromNode(n), "acct/7", lock.WithTTL(time.Second))
	c := lock.NewMutex(lock.FromNode(n), "acct/7", lock.WithTTL(time.Second))
	ta, err := a.Lock(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if err := write(ta, "a1"); err != nil {
		t.Fatal(err)
	}
	// a's keepalive stops (only it: the hook stands in for a GC pause or
	// a frozen VM, which TestStoppedProcessLosesLock makes real).
	a.SetPausedForTest(true)
	paused := time.Now()
	tc, err := c.Lock(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if d := time.Since(paused); d > 2500*time.Millisecond {
		t.Fatalf("c waited %v for the paused holder's 1s lease", d)
	}
	if tc <= ta {
		t.Fatalf("token %d after %d", tc, ta)
	}
	if !a.Deadline().Before(time.Now()) {
		t.Fatalf("paused holder's deadline %v is not past", a.Deadline())
	}
	// The paused keepalive has not noticed, so Done is still open; Valid
	// reports the loss from the deadline.
	select {
	case <-a.Done():
		t.Fatal("Done closed while the keepalive was paused")
	default:
	}
	if err := a.Valid(); !errors.Is(err, lock.ErrLeaseLost) {
		t.Fatalf("paused holder's Valid: %v, want ErrLeaseLost", err)
	}
	if err := write(tc, "c1"); err != nil {
		t.Fatal(err)
	}
	// a resumes and, before its session notices the loss, writes.
	a.SetPausedForTest(false)
	if err := write(ta, "a2"); !errors.Is(err, lock.ErrStaleToken) {
		t.Fatalf("paused holder's write: %v, want ErrStaleToken", err)
	}
	if v, err := store.Get([]byte("acct/7/balance")); err != nil || string(v) != "c1" {
		t.Fatalf("balance %q, %v; want c1", v, err)
	}
	select {
	case <-a.Done():
	case <-time.After(time.Second):
		t.Fatal("paused holder did not notice its lost lease within 1s of resuming")
	}
	if err := a.Unlock(ctx); !errors.Is(err, lock.ErrNotHeld) || !errors.Is(err, lock.ErrLeaseLost) {
		t.Fatalf("Unlock of a lost lock: %v, want ErrNotHeld and ErrLeaseLost", err)
	}
	// a's Unlock changed nothing: c still holds.
	if _, err := lock.NewMutex(lock.FromNode(n), "acct/7").TryLock(ctx); !errors.Is(err, lock.ErrLocked) {
		t.Fatalf("TryLock: %v, want ErrLocked", err)
	}
	if err := c.Unlock(ctx); err != nil {
		t.Fatal(err)
	}
}

// TestTokensIncreaseAcrossRestart restarts an embedded node whose lock
// stream is empty (the release marker expired) and checks that the next
// token is still higher.
func TestTokensIncreaseAcrossRestart(t *testing.T) {
	dir := t.TempDir()
	ctx := within(t, 30*time.Second)
	open := func() *coord.Node {
		n, err := coord.Open(ctx, coord.WithDataDir(dir), quiet())
		if err != nil {
			t.Fatal(err)
		}
		return n
	}
	n := open()
	mu := lock.NewMutex(lock.FromNode(n), "restart", lock.WithTTL(time.Second))
	t1, err := mu.Lock(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if err := mu.Unlock(ctx); err != nil {
		t.Fatal(err)
	}
	time.Sleep(2 * time.Second) // the release marker expires: the key is empty
	if err := n.Close(); err != nil {
		t.Fatal(err)
	}
	n = open()
	defer n.Close()
	mu = lock.NewMutex(lock.FromNode(n), "restart", lock.WithTTL(time.Second))
	t2, err := mu.Lock(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if t2 <= t1 {
		t.Fatalf("token %d after restart, %d before", t2, t1)
	}
	if err := mu.Unlock(ctx); err != nil {
		t.Fatal(err)
	}
}

// TestGrantCommittedWhileClientTimedOut holds back the node's replies while
// a TryLock's write commits: the write times out, and the attempt confirms
// by reading its attempt ID back once replies flow again.
func TestGrantCommittedWhileClientTimedOut(t *testing.T) {
	n := openNode(t, coord.WithListen("127.0.0.1:-1"), nodetest.ListenAuth())
	p := newStallProxy(t, listenAddr(t, n))
	client := clientVia(t, p)
	ctx := within(t, 30*time.Second)

	mu := lock.NewMutex(lock.FromNode(client), "unclear", lock.WithTTL(5*time.Second), lock.WithOpTimeout(200*time.Millisecond))
	p.setStall(true)
	go func() {
		time.Sleep(800 * time.Millisecond)
		p.setStall(false)
	}()
	start := time.Now()
	token, err := mu.TryLock(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if time.Since(start) < 800*time.Millisecond {
		t.Fatal("TryLock returned while replies were held back")
	}
	other := lock.NewMutex(lock.FromNode(n), "unclear")
	if _, err := other.TryLock(ctx); !errors.Is(err, lock.ErrLocked) {
		t.Fatalf("TryLock by another: %v, want ErrLocked", err)
	}
	if err := mu.Unlock(ctx); err != nil {
		t.Fatal(err)
	}
	t2, err := other.TryLock(ctx)
	if err != nil || t2 <= token {
		t.Fatalf("after Unlock: token %d (%v), previous %d", t2, err, token)
	}
	if err := other.Unlock(ctx); err != nil {
		t.Fatal(err)
	}
}

// TestUnclearGrantGivenBackWhenContextEnds lets a TryLock's context end
// while its committed write's reply is held back: TryLock fails, and the
// grant it did not see is released at once, not left to its 10s TTL.
func TestUnclearGrantGivenBackWhenContextEnds(t *testing.T) {
	n := openNode(t, coord.WithListen("127.0.0.1:-1"), nodetest.ListenAuth())
	p := newStallProxy(t, listenAddr(t, n))
	client := clientVia(t, p)
	ctx := within(t, 30*time.Second)

	mu := lock.NewMutex(lock.FromNode(client), "abandoned", lock.WithTTL(10*time.Second), lock.WithOpTimeout(200*time.Millisecond))
	p.setStall(true)
	go func() {
		time.Sleep(1500 * time.Millisecond)
		p.setStall(false)
	}()
	if _, err := mu.TryLock(within(t, 500*time.Millisecond)); !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("TryLock: %v, want context.DeadlineExceeded", err)
	}
	if mu.Token() != 0 {
		t.Fatal("failed TryLock left a token")
	}
	other := lock.NewMutex(lock.FromNode(n), "abandoned")
	if _, err := other.TryLock(ctx); err != nil {
		t.Fatalf("TryLock by another right after: %v (the unseen grant was not given back)", err)
	}
	if err := other.Unlock(ctx); err != nil {
		t.Fatal(err)
	}
}

// TestKeepaliveSurvivesUnclearRefreshes holds back replies for longer than
// the op timeout but shorter than the TTL: refreshes time out while
// committing, and the session adopts them by reading back instead of
// declaring the lease lost.
func TestKeepaliveSurvivesUnclearRefreshes(t *testing.T) {
	n := openNode(t, coord.WithListen("127.0.0.1:-1"), nodetest.ListenAuth())
	p := newStallProxy(t, listenAddr(t, n))
	client := clientVia(t, p)
	ctx := within(t, 30*time.Second)

	mu := lock.NewMutex(lock.FromNode(client), "kept", lock.WithTTL(3*time.Second), lock.WithOpTimeout(200*time.Millisecond))
	if _, err := mu.Lock(ctx); err != nil {
		t.Fatal(err)
	}
	time.Sleep(900 * time.Millisecond) // just before the first keepalive
	before := mu.Deadline()
	p.setStall(true)
	time.Sleep(1200 * time.Millisecond) // the first keepalive (at TTL/3) and its retries stall
	p.setStall(false)
	if p.heldReplies() == 0 {
		t.Fatal("no reply was held back: the stall tested nothing")
	}
	time.Sleep(3 * time.Second) // past the TTL counted from the grant
	select {
	case <-mu.Done():
		t.Fatal("lease lost over refreshes with unclear outcomes")
	default:
	}
	if !mu.Deadline().After(before.Add(time.Second)) {
		t.Fatalf("deadline %v not extended past %v: the refreshes were not adopted", mu.Deadline(), before)
	}
	if _, err := lock.NewMutex(lock.FromNode(n), "kept").TryLock(ctx); !errors.Is(err, lock.ErrLocked) {
		t.Fatalf("TryLock by another: %v, want ErrLocked", err)
	}
	if err := mu.Unlock(ctx); err != nil {
		t.Fatal(err)
	}
}
