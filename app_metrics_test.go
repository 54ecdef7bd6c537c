package concord_test

import (
	"context"
	"io"
	"log/slog"
	"net/http"
	"strings"
	"testing"
	"time"

	"connectrpc.com/connect/v2"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil/promlint"
	dto "github.com/prometheus/client_model/go"
	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"

	"github.com/concordrpc/concord"
	greeterv1 "github.com/concordrpc/concord/examples/greeter/gen/greeter/v1"
	"github.com/concordrpc/concord/examples/greeter/gen/greeter/v1/greeterv1concord"
	"github.com/concordrpc/concord/examples/greeter/greeter"
	"github.com/concordrpc/concord/rpc"
)

// TestAppMetrics runs a greeter App, makes real calls (one OK, one refused
// by validation, and calls to many unregistered methods of the greeter
// service), then scrapes the admin listener's /metrics: the calls are
// counted by procedure and code, the histogram counts agree, the unknown
// methods add no label value, coordination is read,
// and promlint finds nothing to fix in anything the App serves.
func TestAppMetrics(t *testing.T) {
	app, url, stop := runApp(t, t.TempDir())
	defer func() {
		if err := stop(); err != nil {
			t.Error(err)
		}
	}()
	ctx, cancel := context.WithTimeout(t.Context(), 20*time.Second)
	defer cancel()
	if _, err := app.Node(ctx); err != nil {
		t.Fatal(err)
	}
	conn := rpc.NewConn(url)
	defer conn.Close()
	client := greeterv1concord.NewGreeterServiceClient(conn)
	if _, err := client.Greet(ctx, &greeterv1.GreetRequest{Name: "metrics"}); err != nil {
		t.Fatal(err)
	}
	if _, err := client.Greet(ctx, &greeterv1.GreetRequest{}); connect.CodeOf(err) != connect.CodeInvalidArgument {
		t.Fatalf("Greet with no name: %v, want invalid_argument", err)
	}
	const unknownCalls = 50
	for i := range unknownCalls {
		path := "/greeter.v1.GreeterService/NoSuchMethod" + strings.Repeat("x", i)
		res, err := http.Post(url+path, "application/json", strings.NewReader("{}"))
		if err != nil {
			t.Fatal(err)
		}
		res.Body.Close()
		if res.StatusCode != http.StatusNotFound && res.StatusCode != http.StatusNotImplemented {
			t.Fatalf("POST %s: HTTP %d", path, res.StatusCode)
		}
	}

	admin, err := app.AdminAddr(ctx)
	if err != nil {
		t.Fatal(err)
	}
	body := scrape(t, "http://"+admin.String()+concord.MetricsPath)
	families := parseMetrics(t, body)

	const greet = "/greeter.v1.GreeterService/Greet"
	for _, tc := range []struct{ procedure, code string }{{greet, "ok"}, {greet, "invalid_argument"}} {
		labels := map[string]string{"procedure": tc.procedure, "protocol": "connect", "code": tc.code}
		if got := value(families["concord_rpc_server_calls_total"], labels); got != 1 {
			t.Errorf("calls_total%v = %v, want 1", labels, got)
		}
		if got := histogramCount(families["concord_rpc_server_call_duration_seconds"], labels); got != 1 {
			t.Errorf("call_duration_seconds_count%v = %v, want 1", labels, got)
		}
	}
	procedures := map[string]bool{}
	for _, m := range families["concord_rpc_server_calls_total"].GetMetric() {
		procedures[label(m, "procedure")] = true
	}
	for p := range procedures {
		if p != greet && p != "unknown" && !strings.HasPrefix(p, "/grpc.") {
			t.Errorf("procedure label %q: neither registered nor \"unknown\"", p)
		}
	}
	// connect-go answers unregistered methods before the interceptor
	// chain, so they are not counted at all today; were they, they
	// would all be "unknown" (see package metrics' tests).
	if n := len(families["concord_rpc_server_calls_total"].GetMetric()); n > 3 {
		t.Errorf("%d calls_total series after %d calls to distinct unknown methods, want at most 3", n, unknownCalls)
	}
	if got := value(families["concord_coord_up"], nil); got != 1 {
		t.Errorf("concord_coord_up = %v, want 1", got)
	}
	if got := value(families["concord_registry_instances"], map[string]string{"service": greeterv1concord.GreeterServiceDiscoveryName, "ready": "true"}); got != 1 {
		t.Errorf("registry instances of greeter = %v, want 1", got)
	}

	problems, err := promlint.New(strings.NewReader(body)).Lint()
	if err != nil {
		t.Fatal(err)
	}
	for _, p := range problems {
		t.Errorf("promlint: %s: %s", p.Metric, p.Text)
	}
}

// TestAppMetricsRegistry: WithoutMetrics leaves MetricsPath unserved, and a
// given registry is served with the user's own metrics in it.
func TestAppMetricsRegistry(t *testing.T) {
	reg := prometheus.NewRegistry()
	mine := prometheus.NewCounter(prometheus.CounterOpts{Name: "my_events_total", Help: "Mine."})
	reg.MustRegister(mine)
	mine.Inc()
	for _, tc := range []struct {
		name string
		opt  concord.Option
		want int
	}{
		{"registry", concord.WithMetricsRegistry(reg), http.StatusOK},
		{"without", concord.WithoutMetrics(), http.StatusNotFound},
	} {
		t.Run(tc.name, func(t *testing.T) {
			app := concord.New(concord.WithAddr("127.0.0.1:0"), concord.WithAdminAddr("127.0.0.1:0"),
				concord.WithDataDir(t.TempDir()), concord.WithLogger(slog.New(slog.DiscardHandler)), concord.WithDrainDelay(0), tc.opt)
			greeterv1concord.RegisterGreeterService(app, greeter.Service{})
			_, stop := startApp(t, app)
			defer func() { _ = stop() }()
			admin, err := app.AdminAddr(t.Context())
			if err != nil {
				t.Fatal(err)
			}
			res, err := http.Get("http://" + admin.String() + concord.MetricsPath)
			if err != nil {
				t.Fatal(err)
			}
			res.Body.Close()
			if res.StatusCode != tc.want {
				t.Fatalf("GET %s: HTTP %d, want %d", concord.MetricsPath, res.StatusCode, tc.want)
			}
		})
	}
	families, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, f := range families {
		names = append(names, f.GetName())
	}
	joined := strings.Join(names, " ")
	if !strings.Contains(joined, "my_events_total") || !strings.Contains(joined, "concord_coord_up") {
		t.Fatalf("registry holds %v, want the App's metrics beside my_events_total", names)
	}
}

func scrape(t *testing.T, url string) string {
	t.Helper()
	res, err := http.Get(url)
	if err != nil {
		t.Fatal(err)
	}
	defer res.Body.Close()
	b, err := io.ReadAll(res.Body)
	if err != nil {
		t.Fatal(err)
	}
	if res.StatusCode != http.StatusOK {
		t.Fatalf("GET %s: HTTP %d: %s", url, res.StatusCode, b)
	}
	return string(b)
}

func parseMetrics(t *testing.T, body string) map[string]*dto.MetricFamily {
	t.Helper()
	parser := expfmt.NewTextParser(model.UTF8Validation)
	families, err := parser.TextToMetricFamilies(strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	return families
}

func label(m *dto.Metric, name string) string {
	for _, l := range m.GetLabel() {
		if l.GetName() == name {
			return l.GetValue()
		}
	}
	return ""
}

func matches(m *dto.Metric, labels map[string]string) bool {
	for k, v := range labels {
		if label(m, k) != v {
			return false
		}
	}
	return true
}

// value sums the counter or gauge series of f that carry labels.
func value(f *dto.MetricFamily, labels map[string]string) float64 {
	var sum float64
	for _, m := range f.GetMetric() {
		if matches(m, labels) {
			sum += m.GetCounter().GetValue() + m.GetGauge().GetValue()
		}
	}
	return sum
}

func histogramCount(f *dto.MetricFamily, labels map[string]string) uint64 {
	var sum uint64
	for _, m := range f.GetMetric() {
		if matches(m, labels) {
			sum += m.GetHistogram().GetSampleCount()
		}
	}
	return sum
}
