package metrics

import (
	"github.com/prometheus/client_golang/prometheus"

	"github.com/concordrpc/concord/rpc"
)

// MaxBreakerSeries bounds the instances concord_rpc_client_breaker_state
// and concord_rpc_client_breaker_failures export: instances come from the
// registry, which an operator sizes, but a registry gone wild must not
// blow up a scrape. Past it, instances (in BreakerStatus order: by service,
// then instance ID) are left out and
// concord_rpc_client_breaker_instances_omitted counts them.
const MaxBreakerSeries = 256

// GovernanceSource is what a Governance collector reads at each scrape;
// a nil function exports nothing of its part.
type GovernanceSource struct {
	// Limits returns the server's rate limits (rpc.Server.LimitStatus).
	Limits func() []rpc.LimitStatus
	// Shed returns the calls shed so far (rpc.Server.ShedCalls).
	Shed func() uint64
	// Breakers returns the client's breakers per upstream instance
	// (rpc.Conn.BreakerStatus).
	Breakers func() []rpc.BreakerStatus
}

// Governance is a prometheus.Collector of the admission and breaker
// state, read from its GovernanceSource when scraped (no I/O):
//
//   - concord_rpc_limit_admitted_calls_total{procedure} and
//     concord_rpc_limit_refused_calls_total{procedure}: calls each rate
//     limit admitted and refused
//   - concord_rpc_limit_borrowed_tokens_total{procedure}: tokens a
//     cluster-scoped limit drew from the cluster's store
//   - concord_rpc_limit_saturation_ratio{procedure}: the refused share of
//     the last 10 to 20 seconds (rpc.LimitStatus.Saturation)
//   - concord_rpc_server_shed_calls_total: calls shed past the in-flight
//     bound
//   - concord_rpc_client_breaker_state{service,instance}: 0 closed, 1
//     half-open, 2 open (the worst of the instance's per-method breakers)
//   - concord_rpc_client_breaker_failures{service,instance}: the failure
//     streak (rpc.BreakerStatus.Failures)
//   - concord_rpc_client_breaker_instances_omitted: instances left out
//     past MaxBreakerSeries
//   - concord_rpc_client_calls_in_flight{service}: the client's calls to
//     each upstream service that have not ended, summed over all its
//     instances (rpc.BreakerStatus.InFlight)
//
// procedure is a method the server registered with a limit; service and
// instance are registry entries the process resolved. None comes from a
// caller.
type Governance struct{ src GovernanceSource }

// NewGovernance returns a Governance collector over src.
func NewGovernance(src GovernanceSource) *Governance { return &Governance{src: src} }

var (
	descAdmitted = prometheus.NewDesc("concord_rpc_limit_admitted_calls_total", "Calls a rate limit admitted since the process started.", []string{"procedure"}, nil)
	descRefused  = prometheus.NewDesc("concord_rpc_limit_refused_calls_total", "Calls a rate limit refused (resource_exhausted) since the process started.", []string{"procedure"}, nil)
	descBorrowed = prometheus.NewDesc("concord_rpc_limit_borrowed_tokens_total", "Tokens a cluster-scoped rate limit drew from the cluster's limiter store.", []string{"procedure"}, nil)
	descSat      = prometheus.NewDesc("concord_rpc_limit_saturation_ratio", "Share of calls a rate limit refused over the last 10 to 20 seconds.", []string{"procedure"}, nil)
	descShed     = prometheus.NewDesc("concord_rpc_server_shed_calls_total", "Calls refused with unavailable past the server's in-flight bound.", nil, nil)
	descBrState  = prometheus.NewDesc("concord_rpc_client_breaker_state", "Circuit breaker state of an upstream instance: 0 closed, 1 half-open, 2 open.", []string{"service", "instance"}, nil)
	descBrFails  = prometheus.NewDesc("concord_rpc_client_breaker_failures", "Failed calls in a row to an upstream instance, as its breakers counted them.", []string{"service", "instance"}, nil)
	descInFlight = prometheus.NewDesc("concord_rpc_client_calls_in_flight", "Client calls (attempts) to an upstream service that have not ended.", []string{"service"}, nil)
	descBrOmit   = prometheus.NewDesc("concord_rpc_client_breaker_instances_omitted", "Upstream instances left out of the breaker metrics past their series bound.", nil, nil)
)

// Describe implements prometheus.Collector.
func (g *Governance) Describe(ch chan<- *prometheus.Desc) {
	for _, d := range []*prometheus.Desc{descAdmitted, descRefused, descBorrowed, descSat, descShed, descBrState, descBrFails, descInFlight, descBrOmit} {
		ch <- d
	}
}

// Collect implements prometheus.Collector.
func (g *Governance) Collect(ch chan<- prometheus.Metric) {
	if g.src.Limits != nil {
		for _, l := range g.src.Limits() {
			ch <- prometheus.MustNewConstMetric(descAdmitted, prometheus.CounterValue, float64(l.Admitted), l.Procedure)
			ch <- prometheus.MustNewConstMetric(descRefused, prometheus.CounterValue, float64(l.Refused), l.Procedure)
			if l.Scope == "cluster" {
				ch <- prometheus.MustNewConstMetric(descBorrowed, prometheus.CounterValue, float64(l.Borrowed), l.Procedure)
			}
			ch <- prometheus.MustNewConstMetric(descSat, prometheus.GaugeValue, l.Saturation, l.Procedure)
		}
	}
	if g.src.Shed != nil {
		ch <- prometheus.MustNewConstMetric(descShed, prometheus.CounterValue, float64(g.src.Shed()))
	}
	if g.src.Breakers != nil {
		bs := g.src.Breakers()
		inFlight := map[string]int64{} // by service: every instance, none omitted
		for _, b := range bs {
			inFlight[b.Service] += b.InFlight
		}
		for service, n := range inFlight {
			ch <- prometheus.MustNewConstMetric(descInFlight, prometheus.GaugeValue, float64(n), service)
		}
		omitted := max(len(bs)-MaxBreakerSeries, 0)
		bs = bs[:len(bs)-omitted]
		seen := map[[2]string]bool{}
		for _, b := range bs {
			k := [2]string{b.Service, b.Instance}
			if seen[k] {
				continue // one instance listed twice (two base URLs): the first
			}
			seen[k] = true
			ch <- prometheus.MustNewConstMetric(descBrState, prometheus.GaugeValue, breakerValue(b.State), b.Service, b.Instance)
			ch <- prometheus.MustNewConstMetric(descBrFails, prometheus.GaugeValue, float64(b.Failures), b.Service, b.Instance)
		}
		ch <- prometheus.MustNewConstMetric(descBrOmit, prometheus.GaugeValue, float64(omitted))
	}
}

func breakerValue(state string) float64 {
	switch state {
	case "half_open":
		return 1
	case "open":
		return 2
	}
	return 0
}
