package metrics

import (
	"fmt"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/concordrpc/concord/tcc"
)

// TCC records the phase calls a TCC coordinator makes:
// concord_tcc_phase_duration_seconds{service,phase,code}, whose _count is
// the number of calls. service is the participant's discovery name, from
// its generated policy. A TCC is safe for concurrent use.
type TCC struct {
	phases *prometheus.HistogramVec
}

// NewTCC registers the TCC metrics with reg and returns them. It fails if
// reg refuses the metric.
func NewTCC(reg prometheus.Registerer) (*TCC, error) {
	t := &TCC{phases: prometheus.NewHistogramVec(prometheus.HistogramOpts{
		Name:    "concord_tcc_phase_duration_seconds",
		Help:    "Time of each Try, Confirm and Cancel call a TCC coordinator made, by participant service, phase and code.",
		Buckets: prometheus.DefBuckets,
	}, []string{"service", "phase", "code"})}
	if err := reg.Register(t.phases); err != nil {
		return nil, fmt.Errorf("metrics: register TCC metrics: %w", err)
	}
	return t, nil
}

// Observe records one phase call: pass t.Observe to tcc.WithPhaseHook.
func (t *TCC) Observe(r tcc.PhaseReport) {
	t.phases.WithLabelValues(r.Service, phaseLabel(r.Phase), codeLabel(r.Code)).Observe(r.Duration.Seconds())
}
