package coord

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"time"

	"github.com/nats-io/nats.go/jetstream"
)

// Names of Concord's key-value buckets and streams on JetStream.
const (
	// BucketRegistry holds service instances, each under a TTL lease.
	BucketRegistry = "concord_registry"
	// BucketLocks holds lock holders and fencing counters.
	BucketLocks = "concord_locks"
	// BucketElections holds election leaders.
	BucketElections = "concord_elections"
	// BucketLimits holds the state of cluster-scoped rate limits.
	BucketLimits = "concord_limits"
	// BucketConfig holds dynamic configuration, with history.
	BucketConfig = "concord_config"
	// StreamTxLog is the TCC transaction log.
	StreamTxLog = "CONCORD_TXLOG"
	// StreamMessages carries durable messages from outboxes, on subjects
	// concord.msg.<topic>.<partition> (package msg).
	StreamMessages = "CONCORD_MESSAGES"
	// StreamDeadLetters holds the messages that consumers gave up on, on
	// subjects concord.dlq.<consumer>.<topic> (package msg).
	StreamDeadLetters = "CONCORD_DEAD_LETTERS"
)

// buckets returns the configurations of Concord's key-value buckets.
// Buckets whose keys expire by TTL keep History 1: with more history an
// expiring key vanishes without a marker or watch event.
func buckets(replicas int) []jetstream.KeyValueConfig {
	ttl := func(name, desc string) jetstream.KeyValueConfig {
		return jetstream.KeyValueConfig{
			Bucket: name, Description: desc, History: 1, Storage: jetstream.FileStorage,
			Replicas: replicas, LimitMarkerTTL: time.Second,
		}
	}
	return []jetstream.KeyValueConfig{
		ttl(BucketRegistry, "Concord service registry"),
		ttl(BucketLocks, "Concord locks and fencing counters"),
		ttl(BucketElections, "Concord leader elections"),
		ttl(BucketLimits, "Concord cluster-scoped rate limits"),
		{Bucket: BucketConfig, Description: "Concord dynamic configuration", History: 16, Storage: jetstream.FileStorage, Replicas: replicas},
	}
}

// streams returns the configurations of Concord's streams.
func streams(replicas int) []jetstream.StreamConfig {
	return []jetstream.StreamConfig{
		{
			// One subject per transaction (concord.txlog.tx.<id>), written
			// conditionally on its last sequence; a finished transaction's
			// record rolls the subject up and expires by its TTL.
			Name: StreamTxLog, Description: "Concord TCC transaction log", Subjects: []string{"concord.txlog.>"},
			Storage: jetstream.FileStorage, Replicas: replicas, Retention: jetstream.LimitsPolicy,
			MaxMsgsPerSubject: 16, Discard: jetstream.DiscardOld,
			AllowDirect: true, AllowRollup: true, AllowMsgTTL: true,
		},
		{
			Name: StreamMessages, Description: "Concord durable messages", Subjects: []string{"concord.msg.>"},
			Storage: jetstream.FileStorage, Replicas: replicas, Retention: jetstream.LimitsPolicy,
			MaxAge: 7 * 24 * time.Hour, Duplicates: 2 * time.Minute,
		},
		{
			// Kept until replayed or deleted by an operator, up to 30
			// days; the duplicate window drops a dead letter re-published
			// by a consumer that crashed before terminating its message.
			Name: StreamDeadLetters, Description: "Concord dead letters", Subjects: []string{"concord.dlq.>"},
			Storage: jetstream.FileStorage, Replicas: replicas, Retention: jetstream.LimitsPolicy,
			MaxAge: 30 * 24 * time.Hour, Duplicates: 2 * time.Minute,
		},
	}
}

// ensureResources creates or updates every bucket and stream, concurrently
// (each create waits for an fsync). It is idempotent; updating raises the
// replica count when the cluster grew. Unless exact is set (an explicit
// WithReplicas), it never lowers the replica count of a stream that
// exists: a process that sees fewer servers than the cluster has (one is
// down, or a client knows only some) must not shrink everyone's
// redundancy.
func ensureResources(ctx context.Context, js jetstream.JetStream, replicas int, exact bool) error {
	var wg sync.WaitGroup
	bs, ss := buckets(replicas), streams(replicas)
	errs := make([]error, len(bs)+len(ss))
	// keep returns the count to write: want, or the existing stream's
	// count if higher. A count it cannot read (a leader election, a
	// timeout) is an error: writing want could lower it.
	keep := func(stream string, want int) (int, error) {
		if exact {
			return want, nil
		}
		s, err := js.Stream(ctx, stream)
		switch {
		case err == nil:
			return max(want, s.CachedInfo().Config.Replicas), nil
		case errors.Is(err, jetstream.ErrStreamNotFound):
			return want, nil
		}
		return 0, fmt.Errorf("reading its replica count: %w", err)
	}
	for i, cfg := range bs {
		wg.Go(func() {
			var err error
			if cfg.Replicas, err = keep("KV_"+cfg.Bucket, cfg.Replicas); err == nil {
				_, err = js.CreateOrUpdateKeyValue(ctx, cfg)
			}
			if err != nil {
				errs[i] = fmt.Errorf("bucket %s: %w", cfg.Bucket, err)
			}
		})
	}
	for i, cfg := range ss {
		wg.Go(func() {
			var err error
			if cfg.Replicas, err = keep(cfg.Name, cfg.Replicas); err == nil {
				_, err = js.CreateOrUpdateStream(ctx, cfg)
			}
			if err != nil {
				errs[len(bs)+i] = fmt.Errorf("stream %s: %w", cfg.Name, err)
			}
		})
	}
	wg.Wait()
	return errors.Join(errs...)
}
