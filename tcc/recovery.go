package tcc

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"time"

	"github.com/concordrpc/concord/coord/lock"
	"github.com/concordrpc/concord/coord/txlog"
	"github.com/concordrpc/concord/internal/wait"
)

// RecoveryElection is the election whose leader runs recovery: one
// process per cluster at a time.
const RecoveryElection = "concord-tcc-recovery"

// Recovery's pacing.
const (
	recoveryTick = 500 * time.Millisecond
	// recoveryGrace is how long past its deadline an undecided
	// transaction is left to its coordinator, which decides cancel itself
	// at the deadline.
	recoveryGrace = 2 * time.Second
	// recoveryParallel bounds the transactions recovery drives at once.
	recoveryParallel = 16
)

// RunRecovery campaigns in RecoveryElection and, while leader, runs
// Recover, until ctx ends. Run it in every process that may coordinate
// (an App does): when the leader dies, another takes over within the
// election's TTL. It returns nil when ctx ends.
func (c *Coordinator) RunRecovery(ctx context.Context) error {
	e := lock.NewElection(c.backend, RecoveryElection)
	for attempt := 0; ctx.Err() == nil; attempt++ {
		if _, err := e.Campaign(ctx, c.cfg.name); err != nil {
			if ctx.Err() == nil {
				c.cfg.logger.Debug("tcc: recovery campaign", slog.Any("error", err))
				wait.Sleep(ctx, wait.Backoff(attempt, 50*time.Millisecond, 5*time.Second))
			}
			continue
		}
		attempt = 0
		c.cfg.logger.Info("tcc: recovery leader")
		rctx, cancel := context.WithCancel(ctx)
		go func() {
			select {
			case <-e.Done():
				cancel()
			case <-rctx.Done():
			}
		}()
		err := c.Recover(rctx)
		cancel()
		if err != nil && ctx.Err() == nil {
			c.cfg.logger.Warn("tcc: recovery stopped; campaigning again", slog.Any("error", err))
		}
		rsctx, rscancel := context.WithTimeout(context.WithoutCancel(ctx), 2*time.Second)
		_ = e.Resign(rsctx)
		rscancel()
		wait.Sleep(ctx, wait.Backoff(0, time.Second, time.Second))
	}
	return nil
}

// Recover finishes the transactions that their coordinators left, until
// ctx ends or its watch of the log ends (an error): a decided one whose
// log record is older than the stale period (WithStaleAfter) is driven to
// its end; an undecided one past its deadline is decided cancel and
// cancelled. Run it in one process at a time (RunRecovery does); two at
// once are safe, only wasteful: every log write is conditional and every
// phase idempotent.
func (c *Coordinator) Recover(ctx context.Context) error {
	node, err := c.backend.Node(ctx)
	if err != nil {
		return err
	}
	log := txlog.Open(node)
	var (
		mu    sync.Mutex
		heads = map[string]txlog.Head{}
	)
	w, err := log.Watch(ctx, func(h txlog.Head) {
		mu.Lock()
		defer mu.Unlock()
		if h.Finished {
			delete(heads, h.ID)
		} else {
			heads[h.ID] = h
		}
	})
	if err != nil {
		return err
	}
	defer w.Stop()
	var (
		wg     sync.WaitGroup
		active = map[string]bool{}
		done   = make(chan string, recoveryParallel)
	)
	defer wg.Wait()
	tick := time.NewTicker(recoveryTick)
	defer tick.Stop()
	for {
		select {
		case <-ctx.Done():
			return nil
		case <-w.Closed():
			return errors.New("tcc: recovery's watch of the transaction log ended")
		case id := <-done:
			delete(active, id)
			continue
		case <-tick.C:
		}
		now := time.Now()
		mu.Lock()
		var due []string
		for id, h := range heads {
			if active[id] || len(active)+len(due) >= recoveryParallel {
				continue
			}
			if (h.State == txlog.StateTrying && now.After(h.Deadline.Add(recoveryGrace))) ||
				(h.State.Decided() && now.Sub(h.Written) > c.cfg.staleAfter) {
				due = append(due, id)
			}
		}
		mu.Unlock()
		for _, id := range due {
			active[id] = true
			wg.Go(func() {
				if err := c.recoverOne(ctx, log, id); err != nil && ctx.Err() == nil {
					c.cfg.logger.Warn("tcc: recovery of a transaction", slog.String("tx", id), slog.Any("error", err))
				}
				done <- id
			})
		}
	}
}

// recoverOne finishes one transaction from its current record.
func (c *Coordinator) recoverOne(ctx context.Context, log *txlog.Log, id string) error {
	rctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	rec, err := log.Get(rctx, id)
	cancel()
	if errors.Is(err, txlog.ErrNotFound) {
		return nil
	}
	if err != nil {
		return err
	}
	if rec.State == txlog.StateTrying {
		if time.Now().Before(rec.Deadline) {
			return nil
		}
		c.cfg.logger.Info("tcc: cancelling a transaction left undecided past its deadline", slog.String("tx", id))
		dctx, cancel := context.WithTimeout(ctx, 10*time.Second)
		rec, err = c.decide(dctx, log, rec, false, fmt.Errorf("undecided at its deadline %s; cancelled by recovery", rec.Deadline.Format(time.RFC3339Nano)))
		cancel()
		if err != nil {
			return err
		}
	} else {
		c.cfg.logger.Info("tcc: finishing a transaction its coordinator left", slog.String("tx", id), slog.String("state", string(rec.State)))
	}
	if rec.State.Finished() {
		return nil
	}
	_, err = c.drive(ctx, rec, nil)
	return err
}
