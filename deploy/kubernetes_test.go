package deploy

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	appsv1 "k8s.io/api/apps/v1"
	autoscalingv2 "k8s.io/api/autoscaling/v2"
	corev1 "k8s.io/api/core/v1"
	policyv1 "k8s.io/api/policy/v1"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"
	sjson "sigs.k8s.io/json"
	"sigs.k8s.io/yaml"
)

// What the binaries serve, which the manifests must probe. Each value is
// copied from the code named beside it (this module does not import
// Concord's, so that its dependencies stay out of Concord's go.sum).
const (
	// cmd/concord/node.go: healthPath, readyPath, on the -http address.
	nodeHealthPath = "/healthz"
	nodeReadyPath  = "/readyz"
	// rpc/server.go (Server.handlerLocked): GET /healthz and GET /readyz
	// on the RPC port, which an App without WithAddr takes from $PORT
	// (options.go, PortEnv).
	appHealthPath = "/healthz"
	appReadyPath  = "/readyz"
	portEnv       = "PORT"
)

// The stop of an App (app.go, App.stop and run): leases given back and
// deregistration, each bounded by 2s; then concord.DefaultDrainDelay
// (options.go); then the calls in flight, bounded by the greeter's
// -drain-timeout (rpc.WithDrain); then the store and the node close, which
// is not bounded: an idle greeter stopped in 2.5s in all on SIGTERM here,
// 1s of it the drain delay, so 2s is allowed for it.
const (
	appReleaseBound    = 2 * time.Second
	appDeregisterBound = 2 * time.Second
	appDrainDelay      = time.Second
	appCloseAllowance  = 2 * time.Second
)

// measuredIdleRSS is the greeter's median idle VmRSS in BENCHMARKS.md
// ("Idle RSS", embedded mode; client mode runs no JetStream server).
var measuredIdleRSS = resource.MustParse("31.2Mi")

// manifests is every object of the kustomization, by kind and name.
type manifests struct {
	services     map[string]*corev1.Service
	statefulSets map[string]*appsv1.StatefulSet
	deployments  map[string]*appsv1.Deployment
	pdbs         map[string]*policyv1.PodDisruptionBudget
	hpas         map[string]*autoscalingv2.HorizontalPodAutoscaler
	secrets      map[string]*corev1.Secret
}

// kustomization is the part of kustomize's Kustomization the manifests use;
// a field it does not know fails the decoding.
type kustomization struct {
	APIVersion string `json:"apiVersion"`
	Kind       string `json:"kind"`
	Labels     []struct {
		Pairs            map[string]string `json:"pairs"`
		IncludeSelectors bool              `json:"includeSelectors"`
	} `json:"labels"`
	Resources []string `json:"resources"`
	Images    []struct {
		Name    string `json:"name"`
		NewName string `json:"newName"`
		NewTag  string `json:"newTag"`
		Digest  string `json:"digest"`
	} `json:"images"`
}

const dir = "kubernetes"

// exampleSecret is the Secret's example, decoded and checked, but not a
// resource of the kustomization (its values are placeholders).
const exampleSecret = "secret.example.yaml"

// load decodes every manifest strictly: an unknown field, a wrong type or
// a kind this test does not know fails it.
func load(t *testing.T) (*kustomization, *manifests) {
	t.Helper()
	var k kustomization
	decodeFile(t, filepath.Join(dir, "kustomization.yaml"), &k)
	if k.APIVersion != "kustomize.config.k8s.io/v1beta1" || k.Kind != "Kustomization" {
		t.Fatalf("kustomization.yaml: %s %s", k.APIVersion, k.Kind)
	}
	files, err := filepath.Glob(filepath.Join(dir, "*.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	for _, f := range files {
		base := filepath.Base(f)
		if base != "kustomization.yaml" && base != exampleSecret && !slices.Contains(k.Resources, base) {
			t.Errorf("%s is not a resource of kustomization.yaml", base)
		}
	}
	m := &manifests{
		services: map[string]*corev1.Service{}, statefulSets: map[string]*appsv1.StatefulSet{},
		deployments: map[string]*appsv1.Deployment{}, pdbs: map[string]*policyv1.PodDisruptionBudget{},
		hpas: map[string]*autoscalingv2.HorizontalPodAutoscaler{}, secrets: map[string]*corev1.Secret{},
	}
	for _, r := range append(slices.Clone(k.Resources), exampleSecret) {
		b, err := os.ReadFile(filepath.Join(dir, r))
		if err != nil {
			t.Fatalf("resource %s: %v", r, err)
		}
		for i, doc := range documents(b) {
			name := fmt.Sprintf("%s, document %d", r, i+1)
			if err := m.add(doc); err != nil {
				t.Fatalf("%s: %v", name, err)
			}
		}
	}
	return &k, m
}

// documents splits a multi-document YAML file.
func documents(b []byte) [][]byte {
	var docs [][]byte
	for _, d := range regexp.MustCompile(`(?m)^---\s*$`).Split(string(b), -1) {
		if strings.TrimSpace(regexp.MustCompile(`(?m)^\s*#.*$`).ReplaceAllString(d, "")) != "" {
			docs = append(docs, []byte(d))
		}
	}
	return docs
}

// add decodes doc strictly into the k8s.io/api type of its kind.
func (m *manifests) add(doc []byte) error {
	var tm metav1.TypeMeta
	if err := yaml.Unmarshal(doc, &tm); err != nil {
		return err
	}
	strict := func(obj any, wantAPIVersion string, meta *metav1.ObjectMeta) (string, error) {
		if tm.APIVersion != wantAPIVersion {
			return "", fmt.Errorf("%s has apiVersion %q, want %q", tm.Kind, tm.APIVersion, wantAPIVersion)
		}
		if err := unmarshalStrict(doc, obj); err != nil {
			return "", fmt.Errorf("%s: %w", tm.Kind, err)
		}
		if meta.Name == "" {
			return "", fmt.Errorf("%s without a name", tm.Kind)
		}
		return meta.Name, nil
	}
	var err error
	var name string
	switch tm.Kind {
	case "Service":
		o := new(corev1.Service)
		if name, err = strict(o, "v1", &o.ObjectMeta); err == nil {
			m.services[name] = o
		}
	case "Secret":
		o := new(corev1.Secret)
		if name, err = strict(o, "v1", &o.ObjectMeta); err == nil {
			m.secrets[name] = o
		}
	case "StatefulSet":
		o := new(appsv1.StatefulSet)
		if name, err = strict(o, "apps/v1", &o.ObjectMeta); err == nil {
			m.statefulSets[name] = o
		}
	case "Deployment":
		o := new(appsv1.Deployment)
		if name, err = strict(o, "apps/v1", &o.ObjectMeta); err == nil {
			m.deployments[name] = o
		}
	case "PodDisruptionBudget":
		o := new(policyv1.PodDisruptionBudget)
		if name, err = strict(o, "policy/v1", &o.ObjectMeta); err == nil {
			m.pdbs[name] = o
		}
	case "HorizontalPodAutoscaler":
		o := new(autoscalingv2.HorizontalPodAutoscaler)
		if name, err = strict(o, "autoscaling/v2", &o.ObjectMeta); err == nil {
			m.hpas[name] = o
		}
	default:
		return fmt.Errorf("kind %q (%s): this test does not know it; decode it here", tm.Kind, tm.APIVersion)
	}
	return err
}

func decodeFile(t *testing.T, path string, obj any) {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	if err := unmarshalStrict(b, obj); err != nil {
		t.Fatalf("%s: %v", path, err)
	}
}

// unmarshalStrict decodes YAML as the API server's strict field validation
// does: field names are case-sensitive (encoding/json's are not, so
// yaml.UnmarshalStrict accepts "clusterIp"), and unknown or duplicate
// fields fail.
func unmarshalStrict(doc []byte, obj any) error {
	j, err := yaml.YAMLToJSONStrict(doc)
	if err != nil {
		return err
	}
	strictErrs, err := sjson.UnmarshalStrict(j, obj, sjson.DisallowDuplicateFields, sjson.DisallowUnknownFields)
	return errors.Join(append(strictErrs, err)...)
}

// TestStrictDecodingRejectsUnknownFields: the decoding this file relies on
// fails on a misspelt field, which Kubernetes would drop with a warning.
func TestStrictDecodingRejectsUnknownFields(t *testing.T) {
	m := &manifests{services: map[string]*corev1.Service{}}
	for _, field := range []string{"clusterIp: None", "publishNotReadyAddress: true", "selector: {a: b}\n  selector: {c: d}"} {
		err := m.add([]byte("apiVersion: v1\nkind: Service\nmetadata:\n  name: x\nspec:\n  " + field + "\n"))
		if err == nil {
			t.Errorf("spec with %q decoded", field)
		}
	}
	if err := m.add([]byte("apiVersion: v1\nkind: Service\nmetadata:\n  name: x\nspec:\n  clusterIP: None\n")); err != nil {
		t.Fatal(err)
	}
}

func TestManifests(t *testing.T) {
	k, m := load(t)
	if len(m.statefulSets) != 1 || len(m.deployments) != 1 || len(m.pdbs) != 1 || len(m.hpas) != 1 || len(m.secrets) != 1 {
		t.Fatalf("want one StatefulSet, Deployment, PodDisruptionBudget, HPA and example Secret; got %d %d %d %d %d",
			len(m.statefulSets), len(m.deployments), len(m.pdbs), len(m.hpas), len(m.secrets))
	}
	var images []string
	for _, im := range k.Images {
		images = append(images, im.Name)
	}
	for _, sts := range m.statefulSets {
		checkPod(t, m, "StatefulSet "+sts.Name, sts.Spec.Template, images)
	}
	for _, d := range m.deployments {
		checkPod(t, m, "Deployment "+d.Name, d.Spec.Template, images)
	}
	t.Run("node StatefulSet", func(t *testing.T) { checkNodes(t, m) })
	t.Run("greeter Deployment", func(t *testing.T) { checkGreeter(t, m) })
	for _, svc := range m.services {
		if !selects(m, svc.Spec.Selector) {
			t.Errorf("Service %s selects no pod template: %v", svc.Name, svc.Spec.Selector)
		}
	}
}

// checkPod checks what every pod template needs: an image the
// kustomization sets, a non-root user, and Secret references that the
// example Secret has.
func checkPod(t *testing.T, m *manifests, name string, tpl corev1.PodTemplateSpec, images []string) {
	t.Helper()
	if sc := tpl.Spec.SecurityContext; sc == nil || sc.RunAsNonRoot == nil || !*sc.RunAsNonRoot {
		t.Errorf("%s: runAsNonRoot is not set", name)
	}
	for _, c := range tpl.Spec.Containers {
		if !slices.Contains(images, c.Image) {
			t.Errorf("%s: image %q is not in the kustomization's images %v", name, c.Image, images)
		}
		for _, e := range c.Env {
			ref := e.ValueFrom
			if ref == nil || ref.SecretKeyRef == nil {
				continue
			}
			s := m.secrets[ref.SecretKeyRef.Name]
			if s == nil {
				t.Errorf("%s: %s refers to Secret %s, which %s does not define", name, e.Name, ref.SecretKeyRef.Name, exampleSecret)
			} else if _, ok := s.StringData[ref.SecretKeyRef.Key]; !ok {
				t.Errorf("%s: %s refers to key %s, which %s does not have", name, e.Name, ref.SecretKeyRef.Key, exampleSecret)
			}
		}
	}
}

func checkNodes(t *testing.T, m *manifests) {
	sts := m.statefulSets["concord"]
	if sts == nil {
		t.Fatal("no StatefulSet concord")
	}
	c := container(t, sts.Spec.Template, "node")
	if sts.Spec.Replicas == nil || *sts.Spec.Replicas != 3 {
		t.Errorf("replicas %v, want 3", sts.Spec.Replicas)
	}
	if got := env(c, "CONCORD_REPLICAS"); got != strconv.Itoa(int(*sts.Spec.Replicas)) {
		t.Errorf("CONCORD_REPLICAS %q, want the StatefulSet's replicas %d", got, *sts.Spec.Replicas)
	}
	if sts.Spec.PodManagementPolicy != appsv1.ParallelPodManagement {
		t.Errorf("podManagementPolicy %q: a node is ready only with a quorum of peers, so pods must start in parallel", sts.Spec.PodManagementPolicy)
	}
	if len(sts.Spec.VolumeClaimTemplates) != 1 || !mounts(c, sts.Spec.VolumeClaimTemplates[0].Name, flagValue(t, c.Args, "data")) {
		t.Errorf("the data directory (-data) is not a volume of the claim template")
	}
	// The headless Service gives the peers their names.
	svc := m.services[sts.Spec.ServiceName]
	if svc == nil || svc.Spec.ClusterIP != corev1.ClusterIPNone || !svc.Spec.PublishNotReadyAddresses {
		t.Fatalf("serviceName %q: want a headless Service that publishes not-ready addresses", sts.Spec.ServiceName)
	}
	if !labels.SelectorFromSet(svc.Spec.Selector).Matches(labels.Set(sts.Spec.Template.Labels)) {
		t.Errorf("Service %s does not select the StatefulSet's pods", svc.Name)
	}
	// The peers: -peers-from-statefulset with POD_NAME, and a template
	// that names each pod in the headless Service at the route port.
	if !slices.Contains(c.Args, "-peers-from-statefulset") {
		t.Errorf("args %v lack -peers-from-statefulset", c.Args)
	}
	if e := envVar(c, "POD_NAME"); e == nil || e.ValueFrom == nil || e.ValueFrom.FieldRef == nil || e.ValueFrom.FieldRef.FieldPath != "metadata.name" {
		t.Errorf("POD_NAME is not the pod's metadata.name")
	}
	routes := containerPort(t, c, "routes")
	want := fmt.Sprintf("{name}.%s.$(POD_NAMESPACE).svc.cluster.local:%d", svc.Name, routes)
	if got := env(c, "CONCORD_PEER_TEMPLATE"); got != want {
		t.Errorf("CONCORD_PEER_TEMPLATE %q, want %q", got, want)
	}
	if env(c, "CONCORD_PEER_TEMPLATE") != "" && indexOf(c.Env, "POD_NAMESPACE") > indexOf(c.Env, "CONCORD_PEER_TEMPLATE") {
		t.Errorf("POD_NAMESPACE must come before CONCORD_PEER_TEMPLATE, which expands it")
	}
	for _, key := range []string{"CONCORD_ROUTE_PASSWORD", "CONCORD_NATS_PASSWORD"} {
		if e := envVar(c, key); e == nil || e.ValueFrom == nil || e.ValueFrom.SecretKeyRef == nil {
			t.Errorf("%s does not come from a Secret", key)
		}
	}
	// Probes at -http's port, on the paths concord node serves.
	httpPort := port(t, flagValue(t, c.Args, "http"))
	if p := containerPort(t, c, "http"); p != httpPort {
		t.Errorf("container port http %d, -http port %d", p, httpPort)
	}
	if natsPort := port(t, flagValue(t, c.Args, "listen")); containerPort(t, c, "nats") != natsPort {
		t.Errorf("container port nats differs from -listen's %d", natsPort)
	}
	checkProbe(t, c, "startup", c.StartupProbe, nodeHealthPath, httpPort)
	checkProbe(t, c, "liveness", c.LivenessProbe, nodeHealthPath, httpPort)
	checkProbe(t, c, "readiness", c.ReadinessProbe, nodeReadyPath, httpPort)
	// One node at a time may be evicted: two of three keep the quorum.
	pdb := m.pdbs["concord"]
	if pdb == nil || pdb.Spec.MaxUnavailable == nil || pdb.Spec.MaxUnavailable.IntValue() != 1 || pdb.Spec.Selector == nil {
		t.Fatal("want a PodDisruptionBudget concord with maxUnavailable 1")
	}
	sel, err := metav1.LabelSelectorAsSelector(pdb.Spec.Selector)
	if err != nil || !sel.Matches(labels.Set(sts.Spec.Template.Labels)) {
		t.Errorf("the PodDisruptionBudget does not select the StatefulSet's pods (%v)", err)
	}
}

func checkGreeter(t *testing.T, m *manifests) {
	d := m.deployments["greeter"]
	if d == nil {
		t.Fatal("no Deployment greeter")
	}
	c := container(t, d.Spec.Template, "greeter")
	// The App serves on $PORT (no -addr), where the probes look.
	if slices.ContainsFunc(c.Args, func(a string) bool { return strings.HasPrefix(a, "-addr") }) {
		t.Errorf("args %v set -addr: the greeter should serve on $PORT", c.Args)
	}
	appPort, err := strconv.Atoi(env(c, portEnv))
	if err != nil {
		t.Fatalf("%s: %v", portEnv, err)
	}
	if p := containerPort(t, c, "http"); p != appPort {
		t.Errorf("container port http %d, PORT %d", p, appPort)
	}
	if got, want := env(c, "CONCORD_ADVERTISE_URL"), fmt.Sprintf("http://$(POD_IP):%d", appPort); got != want {
		t.Errorf("CONCORD_ADVERTISE_URL %q, want %q: a Deployment's pod names do not resolve", got, want)
	}
	checkProbe(t, c, "liveness", c.LivenessProbe, appHealthPath, appPort)
	checkProbe(t, c, "readiness", c.ReadinessProbe, appReadyPath, appPort)
	// Client mode, against the StatefulSet's pods at their client port.
	sts := m.statefulSets["concord"]
	nats := env(c, "CONCORD_NATS_URL")
	for i := range int(*sts.Spec.Replicas) {
		want := fmt.Sprintf("nats://%s-%d.%s.$(POD_NAMESPACE).svc.cluster.local:%d", sts.Name, i, sts.Spec.ServiceName,
			port(t, flagValue(t, container(t, sts.Spec.Template, "node").Args, "listen")))
		if !slices.Contains(strings.Split(nats, ","), want) {
			t.Errorf("CONCORD_NATS_URL %q lacks %s", nats, want)
		}
	}
	if !mounts(c, "data", flagValue(t, c.Args, "data")) {
		t.Errorf("the data directory (-data) is not a volume")
	}
	// The stop fits the grace period: preStop, then the App's stop.
	lc := c.Lifecycle
	if lc == nil || lc.PreStop == nil || lc.PreStop.Sleep == nil {
		t.Fatal("no preStop sleep")
	}
	drain, err := time.ParseDuration(flagValue(t, c.Args, "drain-timeout"))
	if err != nil {
		t.Fatal(err)
	}
	stop := time.Duration(lc.PreStop.Sleep.Seconds)*time.Second + appReleaseBound + appDeregisterBound + appDrainDelay + drain + appCloseAllowance
	grace := 30 * time.Second // Kubernetes' default
	if g := d.Spec.Template.Spec.TerminationGracePeriodSeconds; g != nil {
		grace = time.Duration(*g) * time.Second
	}
	if stop > grace {
		t.Errorf("preStop and the drain take up to %v, more than the grace period %v", stop, grace)
	}
	// Requests cover the measured idle RSS, with room for load.
	mem := c.Resources.Requests[corev1.ResourceMemory]
	if mem.Cmp(measuredIdleRSS) < 0 {
		t.Errorf("memory request %s is below the measured idle RSS %s", mem.String(), measuredIdleRSS.String())
	}
	if lim := c.Resources.Limits[corev1.ResourceMemory]; lim.Cmp(mem) < 0 {
		t.Errorf("memory limit %s below the request %s", lim.String(), mem.String())
	}
	// The HPA scales this Deployment on CPU, which needs a CPU request.
	if _, ok := c.Resources.Requests[corev1.ResourceCPU]; !ok {
		t.Error("no CPU request: the HPA's utilization target needs one")
	}
	hpa := m.hpas["greeter"]
	if hpa == nil || hpa.Spec.ScaleTargetRef.Kind != "Deployment" || hpa.Spec.ScaleTargetRef.Name != d.Name || hpa.Spec.ScaleTargetRef.APIVersion != "apps/v1" {
		t.Fatal("no HPA for the Deployment greeter")
	}
	if hpa.Spec.MinReplicas == nil || *hpa.Spec.MinReplicas < 2 || hpa.Spec.MaxReplicas < *hpa.Spec.MinReplicas {
		t.Errorf("HPA replicas %v..%d", hpa.Spec.MinReplicas, hpa.Spec.MaxReplicas)
	}
}

func checkProbe(t *testing.T, c *corev1.Container, kind string, p *corev1.Probe, path string, want int) {
	t.Helper()
	if p == nil || p.HTTPGet == nil {
		t.Errorf("%s: no HTTP %s probe", c.Name, kind)
		return
	}
	got := p.HTTPGet.Port.IntValue()
	if p.HTTPGet.Port.StrVal != "" {
		got = containerPort(t, c, p.HTTPGet.Port.StrVal)
	}
	if p.HTTPGet.Path != path || got != want {
		t.Errorf("%s: %s probe GET %s at port %d, want %s at %d", c.Name, kind, p.HTTPGet.Path, got, path, want)
	}
}

func container(t *testing.T, tpl corev1.PodTemplateSpec, name string) *corev1.Container {
	t.Helper()
	for i := range tpl.Spec.Containers {
		if tpl.Spec.Containers[i].Name == name {
			return &tpl.Spec.Containers[i]
		}
	}
	t.Fatalf("no container %s", name)
	return nil
}

func containerPort(t *testing.T, c *corev1.Container, name string) int {
	t.Helper()
	for _, p := range c.Ports {
		if p.Name == name {
			return int(p.ContainerPort)
		}
	}
	t.Fatalf("%s: no container port %s", c.Name, name)
	return 0
}

func envVar(c *corev1.Container, name string) *corev1.EnvVar {
	if i := indexOf(c.Env, name); i >= 0 {
		return &c.Env[i]
	}
	return nil
}

func env(c *corev1.Container, name string) string {
	if e := envVar(c, name); e != nil {
		return e.Value
	}
	return ""
}

func indexOf(env []corev1.EnvVar, name string) int {
	return slices.IndexFunc(env, func(e corev1.EnvVar) bool { return e.Name == name })
}

// flagValue returns the value of -name=value in args (the form the
// manifests use).
func flagValue(t *testing.T, args []string, name string) string {
	t.Helper()
	for _, a := range args {
		if v, ok := strings.CutPrefix(a, "-"+name+"="); ok {
			return v
		}
	}
	t.Fatalf("args %v lack -%s=", args, name)
	return ""
}

func port(t *testing.T, hostPort string) int {
	t.Helper()
	i := strings.LastIndexByte(hostPort, ':')
	p, err := strconv.Atoi(hostPort[i+1:])
	if i < 0 || err != nil {
		t.Fatalf("%q is not host:port", hostPort)
	}
	return p
}

// mounts reports whether c mounts the volume named volume at path.
func mounts(c *corev1.Container, volume, path string) bool {
	return slices.ContainsFunc(c.VolumeMounts, func(m corev1.VolumeMount) bool { return m.Name == volume && m.MountPath == path })
}

// selects reports whether selector matches some pod template's labels.
func selects(m *manifests, selector map[string]string) bool {
	sel := labels.SelectorFromSet(selector)
	for _, s := range m.statefulSets {
		if sel.Matches(labels.Set(s.Spec.Template.Labels)) {
			return true
		}
	}
	for _, d := range m.deployments {
		if sel.Matches(labels.Set(d.Spec.Template.Labels)) {
			return true
		}
	}
	return false
}
