package metrics

import (
	"fmt"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/concordrpc/concord/coord/lock"
)

// Locks records what the locks and elections of a process report
// (lock.WithEvents), by kind ("mutex" or "election"; lock names are left
// out, since they may come from data):
//
//   - concord_lock_grants_total{kind}
//   - concord_lock_waits_total{kind}: grants that had to wait for another
//     holder (or for an acquisition ahead in this process)
//   - concord_lock_wait_duration_seconds{kind}: how long each blocking
//     acquisition (Lock, Campaign) took, waiting or not
//   - concord_lock_leases_lost_total{kind}
//
// A Locks is safe for concurrent use.
type Locks struct {
	grants *prometheus.CounterVec
	waits  *prometheus.CounterVec
	wait   *prometheus.HistogramVec
	lost   *prometheus.CounterVec
}

// lockWaitBuckets span 1 ms to about 65 s: an uncontended grant is one
// round trip, a handoff a few, and a wait for a holder lasts up to its
// critical section or a TTL.
var lockWaitBuckets = prometheus.ExponentialBuckets(0.001, 4, 9)

// NewLocks registers the lock metrics with reg and returns them. It fails
// if reg refuses a metric.
func NewLocks(reg prometheus.Registerer) (*Locks, error) {
	l := &Locks{
		grants: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "concord_lock_grants_total",
			Help: "Locks and leaderships granted, by kind (mutex or election).",
		}, []string{"kind"}),
		waits: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "concord_lock_waits_total",
			Help: "Grants that had to wait for another holder, by kind.",
		}, []string{"kind"}),
		wait: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name:    "concord_lock_wait_duration_seconds",
			Help:    "Time from a blocking Lock or Campaign call to its grant, by kind.",
			Buckets: lockWaitBuckets,
		}, []string{"kind"}),
		lost: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "concord_lock_leases_lost_total",
			Help: "Grants that ended because their lease was lost rather than released, by kind.",
		}, []string{"kind"}),
	}
	for _, c := range []prometheus.Collector{l.grants, l.waits, l.wait, l.lost} {
		if err := reg.Register(c); err != nil {
			return nil, fmt.Errorf("metrics: register lock metrics: %w", err)
		}
	}
	return l, nil
}

// Observe records one event: pass l.Observe to lock.WithEvents.
func (l *Locks) Observe(e lock.Event) {
	kind := e.Lock
	if kind != "mutex" && kind != "election" {
		kind = unknownLabel
	}
	switch e.Kind {
	case lock.EventGranted:
		l.grants.WithLabelValues(kind).Inc()
		if e.Waited {
			l.waits.WithLabelValues(kind).Inc()
		}
		if e.Wait > 0 {
			l.wait.WithLabelValues(kind).Observe(e.Wait.Seconds())
		}
	case lock.EventLeaseLost:
		l.lost.WithLabelValues(kind).Inc()
	}
}
