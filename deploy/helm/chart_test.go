// Package helm holds the Helm chart (inferq/). Its tests render the chart
// with Helm's own Go library for each documented value set and decode every
// document strictly into the real k8s.io/api types (an unknown or misspelt
// field fails), the KEDA ScaledObject into a strict copy of KEDA's
// keda.sh/v1alpha1 types, and check what the API server would not: that
// selectors, ports and probes line up, that the inferq config loads, and
// that the scaler watches inferq's real stream and consumer.
package helm

import (
	"bytes"
	"fmt"
	"maps"
	"net"
	"net/url"
	"os"
	"path"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nkeys"
	appsv1 "k8s.io/api/apps/v1"
	autoscalingv2 "k8s.io/api/autoscaling/v2"
	corev1 "k8s.io/api/core/v1"
	networkingv1 "k8s.io/api/networking/v1"
	policyv1 "k8s.io/api/policy/v1"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/intstr"
	"k8s.io/apimachinery/pkg/util/validation"
	"sigs.k8s.io/yaml"

	"github.com/inferq/inferq/deploy/internal/svccheck"
	"github.com/inferq/inferq/internal/config"
	"github.com/inferq/inferq/internal/natsauth"
	"github.com/inferq/inferq/internal/scaling"
	"github.com/inferq/inferq/pkg/jetstream"
)

// scaledObject is KEDA's keda.sh/v1alpha1 ScaledObject, field for field as
// kedacore/keda v2.21 declares it in apis/keda/v1alpha1 (the status is left
// out: manifests do not set it). KEDA's Go module drags in
// controller-runtime and its CRD is not published as a Go package, so a
// strict copy of the types stands in for the CRD's schema; the CRD's
// validation markers are checked in TestScaledObject.
type scaledObject struct {
	metav1.TypeMeta   `json:",inline"`
	metav1.ObjectMeta `json:"metadata,omitempty"`
	Spec              struct {
		ScaleTargetRef *struct {
			Name                   string `json:"name"`
			APIVersion             string `json:"apiVersion,omitempty"`
			Kind                   string `json:"kind,omitempty"`
			EnvSourceContainerName string `json:"envSourceContainerName,omitempty"`
		} `json:"scaleTargetRef"`
		PollingInterval       *int32 `json:"pollingInterval,omitempty"`
		InitialCooldownPeriod *int32 `json:"initialCooldownPeriod,omitempty"`
		CooldownPeriod        *int32 `json:"cooldownPeriod,omitempty"`
		IdleReplicaCount      *int32 `json:"idleReplicaCount,omitempty"`
		MinReplicaCount       *int32 `json:"minReplicaCount,omitempty"`
		MaxReplicaCount       *int32 `json:"maxReplicaCount,omitempty"`
		Advanced              *struct {
			HorizontalPodAutoscalerConfig *struct {
				Behavior *autoscalingv2.HorizontalPodAutoscalerBehavior `json:"behavior,omitempty"`
				Name     string                                         `json:"name,omitempty"`
			} `json:"horizontalPodAutoscalerConfig,omitempty"`
			RestoreToOriginalReplicaCount bool `json:"restoreToOriginalReplicaCount,omitempty"`
			ScalingModifiers              *struct {
				Formula          string                         `json:"formula,omitempty"`
				Target           string                         `json:"target,omitempty"`
				ActivationTarget string                         `json:"activationTarget,omitempty"`
				MetricType       autoscalingv2.MetricTargetType `json:"metricType,omitempty"`
			} `json:"scalingModifiers,omitempty"`
		} `json:"advanced,omitempty"`
		Triggers []struct {
			Type              string            `json:"type"`
			Name              string            `json:"name,omitempty"`
			UseCachedMetrics  bool              `json:"useCachedMetrics,omitempty"`
			Metadata          map[string]string `json:"metadata"`
			AuthenticationRef *struct {
				Name string `json:"name"`
				Kind string `json:"kind,omitempty"`
			} `json:"authenticationRef,omitempty"`
			MetricType autoscalingv2.MetricTargetType `json:"metricType,omitempty"`
		} `json:"triggers"`
		Fallback *struct {
			FailureThreshold int32  `json:"failureThreshold"`
			Replicas         int32  `json:"replicas"`
			Behavior         string `json:"behavior,omitempty"`
		} `json:"fallback,omitempty"`
	} `json:"spec"`
}

// types maps apiVersion/kind to the type a document decodes into.
var types = map[string]func() any{
	"v1/ConfigMap":                            func() any { return &corev1.ConfigMap{} },
	"v1/Service":                              func() any { return &corev1.Service{} },
	"apps/v1/Deployment":                      func() any { return &appsv1.Deployment{} },
	"apps/v1/StatefulSet":                     func() any { return &appsv1.StatefulSet{} },
	"policy/v1/PodDisruptionBudget":           func() any { return &policyv1.PodDisruptionBudget{} },
	"keda.sh/v1alpha1/ScaledObject":           func() any { return &scaledObject{} },
	"networking.k8s.io/v1/NetworkPolicy":      func() any { return &networkingv1.NetworkPolicy{} },
	"monitoring.coreos.com/v1/ServiceMonitor": func() any { return &serviceMonitor{} },
	"autoscaling/v2/HorizontalPodAutoscaler":  func() any { return &autoscalingv2.HorizontalPodAutoscaler{} },
}

// manifests are the decoded documents of one rendering, by kind.
type manifests struct {
	ns           string
	configMaps   map[string]*corev1.ConfigMap
	services     []*corev1.Service
	deployments  []*appsv1.Deployment
	statefulSets []*appsv1.StatefulSet
	pdbs         []*policyv1.PodDisruptionBudget
	scaled       []*scaledObject
	netpols      []*networkingv1.NetworkPolicy
	monitors     []*serviceMonitor
	hpas         []*autoscalingv2.HorizontalPodAutoscaler
}

var docSep = regexp.MustCompile(`(?m)^---[ \t]*$`)

// decodeAll decodes every rendered document strictly into its type.
func decodeAll(t *testing.T, ns string, files map[string]string) *manifests {
	t.Helper()
	m := &manifests{ns: ns, configMaps: map[string]*corev1.ConfigMap{}}
	for _, file := range slices.Sorted(maps.Keys(files)) {
		if !strings.HasSuffix(file, ".yaml") {
			continue // NOTES.txt, helpers
		}
		for i, doc := range docSep.Split(files[file], -1) {
			obj, err := decode([]byte(doc))
			if err != nil {
				t.Errorf("%s: document %d: %v", file, i+1, err)
				continue
			}
			switch o := obj.(type) {
			case nil: // only comments
			case *corev1.ConfigMap:
				if m.configMaps[o.Name] != nil {
					t.Errorf("%s: ConfigMap %s twice", file, o.Name)
				}
				m.configMaps[o.Name] = o
			case *corev1.Service:
				m.services = append(m.services, o)
			case *appsv1.Deployment:
				m.deployments = append(m.deployments, o)
			case *appsv1.StatefulSet:
				m.statefulSets = append(m.statefulSets, o)
			case *policyv1.PodDisruptionBudget:
				m.pdbs = append(m.pdbs, o)
			case *scaledObject:
				m.scaled = append(m.scaled, o)
			case *networkingv1.NetworkPolicy:
				m.netpols = append(m.netpols, o)
			case *serviceMonitor:
				m.monitors = append(m.monitors, o)
			case *autoscalingv2.HorizontalPodAutoscaler:
				m.hpas = append(m.hpas, o)
			}
		}
	}
	return m
}

func decode(doc []byte) (any, error) {
	var tm metav1.TypeMeta
	if err := yaml.Unmarshal(doc, &tm); err != nil {
		return nil, err
	}
	if tm.APIVersion == "" && tm.Kind == "" {
		if len(bytes.TrimSpace(stripComments(doc))) > 0 {
			return nil, fmt.Errorf("document without apiVersion and kind")
		}
		return nil, nil
	}
	newObj := types[tm.APIVersion+"/"+tm.Kind]
	if newObj == nil {
		return nil, fmt.Errorf("%s %s: not a kind the chart may render", tm.APIVersion, tm.Kind)
	}
	obj := newObj()
	if err := yaml.UnmarshalStrict(doc, obj); err != nil {
		return nil, fmt.Errorf("%s: %w", tm.Kind, err)
	}
	return obj, nil
}

func stripComments(doc []byte) []byte {
	var out []byte
	for _, line := range bytes.Split(doc, []byte("\n")) {
		if !bytes.HasPrefix(bytes.TrimSpace(line), []byte("#")) {
			out = append(out, line...)
		}
	}
	return out
}

// workload is a Deployment or StatefulSet, reduced to what the checks need.
type workload struct {
	kind, name string
	replicas   *int32
	selector   *metav1.LabelSelector
	pod        corev1.PodTemplateSpec
}

func (m *manifests) workloads() []workload {
	var out []workload
	for _, d := range m.deployments {
		out = append(out, workload{"Deployment", d.Name, d.Spec.Replicas, d.Spec.Selector, d.Spec.Template})
	}
	for _, s := range m.statefulSets {
		out = append(out, workload{"StatefulSet", s.Name, s.Spec.Replicas, s.Spec.Selector, s.Spec.Template})
	}
	return out
}

func (m *manifests) workload(kind, name string) (workload, bool) {
	for _, w := range m.workloads() {
		if w.kind == kind && w.name == name {
			return w, true
		}
	}
	return workload{}, false
}

// selects reports whether a selector's labels are all on the pod template.
func selects(sel map[string]string, labels map[string]string) bool {
	if len(sel) == 0 {
		return false
	}
	for k, v := range sel {
		if labels[k] != v {
			return false
		}
	}
	return true
}

// containerPort resolves a probe's or Service's port (number or name).
func containerPort(pod corev1.PodSpec, p intstr.IntOrString) (int32, bool) {
	for _, c := range pod.Containers {
		for _, cp := range c.Ports {
			if (p.Type == intstr.String && cp.Name == p.StrVal) || (p.Type == intstr.Int && cp.ContainerPort == p.IntVal) {
				return cp.ContainerPort, true
			}
		}
	}
	return 0, false
}

// inferqBinary names the inferq service binary a container runs, if any.
func inferqBinary(c corev1.Container) (string, bool) {
	if len(c.Command) == 0 {
		return "", false
	}
	bin := path.Base(c.Command[0])
	return bin, slices.Contains(svccheck.Binaries, bin)
}

// TestChart: every value set renders, each document decodes strictly, every
// object is in the release's namespace under a valid name, and every inferq
// image carries the value set's immutable tag.
func TestChart(t *testing.T) {
	eachSet(t, func(t *testing.T, set string, m *manifests) {
		check := func(kind string, meta metav1.ObjectMeta) {
			if errs := validation.IsDNS1123Subdomain(meta.Name); len(errs) > 0 {
				t.Errorf("%s %q: %v", kind, meta.Name, errs)
			}
			if meta.Namespace != m.ns {
				t.Errorf("%s %s: namespace %q, want %q", kind, meta.Name, meta.Namespace, m.ns)
			}
			if meta.Labels["app.kubernetes.io/instance"] != "inferq" || meta.Labels["app.kubernetes.io/component"] == "" {
				t.Errorf("%s %s: labels %v lack the release and component", kind, meta.Name, meta.Labels)
			}
		}
		for _, o := range m.configMaps {
			check("ConfigMap", o.ObjectMeta)
		}
		for _, o := range m.services {
			check("Service", o.ObjectMeta)
		}
		for _, o := range m.pdbs {
			check("PodDisruptionBudget", o.ObjectMeta)
		}
		for _, o := range m.scaled {
			check("ScaledObject", o.ObjectMeta)
		}
		for _, d := range m.deployments {
			check("Deployment", d.ObjectMeta)
		}
		for _, s := range m.statefulSets {
			check("StatefulSet", s.ObjectMeta)
		}
		for _, o := range m.monitors {
			check("ServiceMonitor", o.ObjectMeta)
		}
		inferq := 0
		for _, w := range m.workloads() {
			for _, c := range w.pod.Spec.Containers {
				if _, ok := inferqBinary(c); !ok {
					continue
				}
				inferq++
				repo, tag, _ := strings.Cut(c.Image, ":")
				if !strings.HasPrefix(repo, "inferq/inferq-") || tag != "v0.1.0" {
					t.Errorf("%s/%s: image %s, want inferq/inferq-*:v0.1.0 (image.tag)", w.name, c.Name, c.Image)
				}
			}
		}
		if inferq != 5 {
			t.Errorf("%d inferq containers, want 5 (ingress, batcher, resultsvc, two worker pools)", inferq)
		}
	})
}

// TestRequiredValues: the chart refuses, with the value to set, an install
// without an image tag, with a moving tag, and with auth on but no
// credential.
func TestRequiredValues(t *testing.T) {
	for _, tc := range []struct{ values, want string }{
		{"image: {tag: \"\"}", "image.tag is required"},
		{"image: {tag: latest}", "image.tag must not be latest"},
		{"auth: {apiKeys: []}", "auth.enabled needs credentials"},
		{"serviceMonitor: {enabled: true}", "serviceMonitor.bearerTokenSHA256 is required"},
		{"nats: {install: false}", "nats.external.url is required"},
		{"redis: {install: false}", "redis.external.address"},
		{"nats: {install: false, external: {url: \"nats://n:4222\"}}", "nats.external.monitoringEndpoint"},
		{"config: {nats: {prefix: other}}", "generated for nats.prefix inferq"},
	} {
		_, err := renderFiles(t, tc.values)
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("values %s: error %v, want %q", tc.values, err, tc.want)
		}
	}
}

// TestTopology: the deployment has the contract's shape.
func TestTopology(t *testing.T) {
	m := render(t, "defaults")
	for _, want := range []struct {
		kind, name string
		replicas   int32 // -1: none set, an autoscaler owns it
	}{
		{"StatefulSet", "nats", 3}, {"StatefulSet", "redis", 1}, {"Deployment", "ingress", -1},
		{"Deployment", "batcher", 2}, {"Deployment", "resultsvc", 1}, {"Deployment", "worker-cpu", 2},
		{"Deployment", "worker-gpu", -1},
	} {
		w, ok := m.workload(want.kind, want.name)
		switch {
		case !ok:
			t.Errorf("%s %s missing", want.kind, want.name)
		case want.replicas < 0 && w.replicas != nil:
			t.Errorf("%s %s sets replicas; its autoscaler owns them", want.kind, want.name)
		case want.replicas >= 0 && (w.replicas == nil || *w.replicas != want.replicas):
			t.Errorf("%s %s: replicas %v, want %d", want.kind, want.name, w.replicas, want.replicas)
		}
	}
}

func TestWorkloads(t *testing.T) {
	eachSet(t, func(t *testing.T, set string, m *manifests) {
		known, err := svccheck.KnownEnv("../..")
		if err != nil {
			t.Fatal(err)
		}
		for _, w := range m.workloads() {
			where := w.kind + " " + w.name
			if w.selector == nil || !selects(w.selector.MatchLabels, w.pod.Labels) || len(w.selector.MatchExpressions) > 0 {
				t.Errorf("%s: selector must be matchLabels found on the pod template", where)
			}
			for _, c := range w.pod.Spec.Containers {
				cwhere := where + " container " + c.Name
				checkResources(t, cwhere, w.name == "worker-gpu", c.Resources)
				for _, p := range []*corev1.Probe{c.LivenessProbe, c.ReadinessProbe, c.StartupProbe} {
					if p != nil && p.HTTPGet != nil {
						if _, ok := containerPort(w.pod.Spec, p.HTTPGet.Port); !ok {
							t.Errorf("%s: probe port %s is not a container port", cwhere, p.HTTPGet.Port.String())
						}
					}
				}
				if c.Name != "exporter" && (c.LivenessProbe == nil || c.ReadinessProbe == nil) {
					t.Errorf("%s: needs liveness and readiness probes", cwhere)
				}
				for _, e := range c.Env {
					if strings.HasPrefix(e.Name, "INFERQ_") && !known[e.Name] {
						t.Errorf("%s: %s is not read by inferq (known: %v)", cwhere, e.Name, svccheck.Names(known))
					}
				}
				if bin, ok := inferqBinary(c); ok {
					checkInferqContainer(t, m, cwhere, bin, w.pod.Spec, c)
				}
			}
		}
	})
}

func checkResources(t *testing.T, where string, gpu bool, r corev1.ResourceRequirements) {
	t.Helper()
	for _, name := range []corev1.ResourceName{corev1.ResourceCPU, corev1.ResourceMemory} {
		req, okReq := r.Requests[name]
		lim, okLim := r.Limits[name]
		if !okReq || !okLim {
			t.Errorf("%s: needs a %s request and limit", where, name)
		} else if req.Cmp(lim) > 0 {
			t.Errorf("%s: %s request %s exceeds its limit %s", where, name, req.String(), lim.String())
		}
	}
	g, hasGPU := r.Limits["nvidia.com/gpu"]
	if gpu != hasGPU || (gpu && g.Cmp(resource.MustParse("1")) < 0) {
		t.Errorf("%s: nvidia.com/gpu limit %q: want at least 1 on the GPU worker and none elsewhere", where, g.String())
	}
}

// checkInferqContainer: the container's config (the ConfigMap's file plus
// its variables) is valid, and its probes ask the right paths on the port
// that config serves them on.
func checkInferqContainer(t *testing.T, m *manifests, where, bin string, pod corev1.PodSpec, c corev1.Container) {
	t.Helper()
	env := map[string]string{}
	for _, e := range c.Env {
		env[e.Name] = e.Value
		if e.ValueFrom != nil {
			env[e.Name] = "from-" + e.Name // set at run time (the pod name)
		}
	}
	file, err := configFile(t, m, pod, c, env["INFERQ_CONFIG"])
	if err != nil {
		t.Errorf("%s: %v", where, err)
		return
	}
	cfg, err := svccheck.ContainerConfig(file, env)
	if err != nil {
		t.Errorf("%s: %v", where, err)
		return
	}
	port, err := svccheck.ServePort(cfg, bin)
	if err != nil {
		t.Errorf("%s: %v", where, err)
		return
	}
	for _, p := range []struct {
		kind, path string
		probe      *corev1.Probe
	}{{"liveness", "/healthz", c.LivenessProbe}, {"readiness", "/readyz", c.ReadinessProbe}} {
		if p.probe == nil || p.probe.HTTPGet == nil {
			t.Errorf("%s: %s probe must be an HTTP GET of %s", where, p.kind, p.path)
			continue
		}
		got, _ := containerPort(pod, p.probe.HTTPGet.Port)
		if p.probe.HTTPGet.Path != p.path || int(got) != port {
			t.Errorf("%s: %s probe GET %s on %d, want %s on %d (where %s serves it)",
				where, p.kind, p.probe.HTTPGet.Path, got, p.path, port, bin)
		}
	}
	if bin == "inferq-worker" && len(cfg.Worker.Models) == 0 {
		t.Errorf("%s: a worker should name its models (INFERQ_WORKER_MODELS)", where)
	}
}

// configFile writes the ConfigMap key mounted at path into a temporary file.
func configFile(t *testing.T, m *manifests, pod corev1.PodSpec, c corev1.Container, file string) (string, error) {
	t.Helper()
	if file == "" {
		return "", fmt.Errorf("INFERQ_CONFIG is not set")
	}
	for _, vm := range c.VolumeMounts {
		if path.Dir(file) != vm.MountPath {
			continue
		}
		for _, v := range pod.Volumes {
			if v.Name != vm.Name || v.ConfigMap == nil {
				continue
			}
			cm, ok := m.configMaps[v.ConfigMap.Name]
			if !ok {
				return "", fmt.Errorf("ConfigMap %s is not in the manifests", v.ConfigMap.Name)
			}
			data, ok := cm.Data[path.Base(file)]
			if !ok {
				return "", fmt.Errorf("ConfigMap %s has no key %s", cm.Name, path.Base(file))
			}
			out := filepath.Join(t.TempDir(), path.Base(file))
			return out, os.WriteFile(out, []byte(data), 0o644)
		}
	}
	return "", fmt.Errorf("INFERQ_CONFIG %s is not a file of a mounted ConfigMap", file)
}

func TestServices(t *testing.T) {
	eachSet(t, func(t *testing.T, set string, m *manifests) {
		for _, s := range m.services {
			var matched []workload
			for _, w := range m.workloads() {
				if selects(s.Spec.Selector, w.pod.Labels) {
					matched = append(matched, w)
				}
			}
			if len(matched) != 1 {
				t.Errorf("Service %s selects %d workloads, want 1", s.Name, len(matched))
				continue
			}
			for _, p := range s.Spec.Ports {
				if _, ok := containerPort(matched[0].pod.Spec, p.TargetPort); !ok {
					t.Errorf("Service %s: port %s: target %s is not a port of %s", s.Name, p.Name, p.TargetPort.String(), matched[0].name)
				}
			}
		}
		for _, sts := range m.statefulSets {
			if !slices.ContainsFunc(m.services, func(s *corev1.Service) bool { return s.Name == sts.Spec.ServiceName }) {
				t.Errorf("StatefulSet %s: serviceName %q is not a Service", sts.Name, sts.Spec.ServiceName)
			}
		}
	})
}

func TestPodDisruptionBudgets(t *testing.T) {
	eachSet(t, func(t *testing.T, set string, m *manifests) {
		covered := map[string]bool{}
		for _, p := range m.pdbs {
			if p.Spec.Selector == nil {
				t.Errorf("PodDisruptionBudget %s: no selector", p.Name)
				continue
			}
			n := 0
			for _, w := range m.workloads() {
				if !selects(p.Spec.Selector.MatchLabels, w.pod.Labels) {
					continue
				}
				n++
				covered[w.name] = true
				// A budget that allows no eviction blocks every node drain.
				if p.Spec.MinAvailable != nil && w.replicas != nil && p.Spec.MinAvailable.IntValue() >= int(*w.replicas) {
					t.Errorf("PodDisruptionBudget %s: minAvailable %s leaves %s (%d replicas) no eviction",
						p.Name, p.Spec.MinAvailable.String(), w.name, *w.replicas)
				}
				if p.Spec.MaxUnavailable != nil && p.Spec.MaxUnavailable.IntValue() < 1 {
					t.Errorf("PodDisruptionBudget %s: maxUnavailable below 1 blocks every drain", p.Name)
				}
			}
			if n != 1 {
				t.Errorf("PodDisruptionBudget %s covers %d workloads, want 1", p.Name, n)
			}
		}
		for _, w := range m.workloads() {
			if (w.replicas == nil || *w.replicas > 1) && !covered[w.name] {
				t.Errorf("%s %s runs several replicas without a PodDisruptionBudget", w.kind, w.name)
			}
		}
	})
}

// inferqConfig loads the ConfigMap's inferq.yaml with config.Load.
func inferqConfig(t *testing.T, m *manifests) config.Config {
	t.Helper()
	cm, ok := m.configMaps["inferq-config"]
	if !ok {
		t.Fatal("ConfigMap inferq-config missing")
	}
	file := filepath.Join(t.TempDir(), "inferq.yaml")
	if err := os.WriteFile(file, []byte(cm.Data["inferq.yaml"]), 0o644); err != nil {
		t.Fatal(err)
	}
	cfg, err := config.Load(file)
	if err != nil {
		t.Fatalf("ConfigMap inferq-config: inferq.yaml: %v", err)
	}
	return cfg
}

func natsStatefulSet(t *testing.T, m *manifests) *appsv1.StatefulSet {
	t.Helper()
	i := slices.IndexFunc(m.statefulSets, func(s *appsv1.StatefulSet) bool { return s.Name == "nats" })
	if i < 0 {
		t.Fatal("StatefulSet nats missing")
	}
	return m.statefulSets[i]
}

func portOf(t *testing.T, pod corev1.PodSpec, name string) int32 {
	t.Helper()
	p, ok := containerPort(pod, intstr.FromString(name))
	if !ok {
		t.Fatalf("no container port named %s", name)
	}
	return p
}

// TestNATS parses the NATS config with nats-server itself, as pod nats-0
// would, and checks it against the StatefulSet, its Service and inferq's
// config.
func TestNATS(t *testing.T) {
	m := render(t, "defaults")
	cfg := inferqConfig(t, m)
	w, ok := m.workload("StatefulSet", "nats")
	if !ok {
		t.Fatal("StatefulSet nats missing")
	}
	sts := natsStatefulSet(t, m)
	replicas := int(*w.replicas)
	if cfg.NATS.Replicas != replicas {
		t.Errorf("inferq nats.replicas %d, NATS nodes %d: want R%d on %d nodes", cfg.NATS.Replicas, replicas, replicas, replicas)
	}
	svc := sts.Spec.ServiceName
	for _, s := range m.services {
		if s.Name == svc && (s.Spec.ClusterIP != corev1.ClusterIPNone || !s.Spec.PublishNotReadyAddresses) {
			t.Errorf("Service %s: want headless, publishing not-ready pods (routes form before readiness)", svc)
		}
	}
	cm, ok := m.configMaps["nats-config"]
	if !ok {
		t.Fatal("ConfigMap nats-config missing")
	}
	file := filepath.Join(t.TempDir(), "nats.conf")
	if err := os.WriteFile(file, []byte(cm.Data["nats.conf"]), 0o644); err != nil {
		t.Fatal(err)
	}
	t.Setenv("POD_NAME", "nats-0")
	secret := newSecretValues(t)
	for _, e := range w.pod.Spec.Containers[0].Env {
		if e.ValueFrom != nil && e.ValueFrom.SecretKeyRef != nil {
			t.Setenv(e.Name, secret.value(t, e.ValueFrom.SecretKeyRef))
		}
	}
	opts, err := server.ProcessConfigFile(file)
	if err != nil {
		t.Fatalf("nats.conf: %v", err)
	}
	if !opts.SyncAlways && (opts.SyncInterval <= 0 || opts.SyncInterval > time.Second) {
		t.Errorf("nats.conf: jetstream sync_interval %v: want it named, always or at most 1s", opts.SyncInterval)
	}
	pod := w.pod.Spec
	if !opts.JetStream || opts.ServerName != "nats-0" {
		t.Errorf("nats.conf: jetstream %v, server_name %q: want JetStream and the pod's name", opts.JetStream, opts.ServerName)
	}
	for name, got := range map[string]int{"client": opts.Port, "cluster": opts.Cluster.Port, "monitor": opts.HTTPPort} {
		if want := portOf(t, pod, name); int(want) != got {
			t.Errorf("nats.conf: %s port %d, container port %s is %d", name, got, name, want)
		}
	}
	var want, got []string
	for i := range replicas {
		want = append(want, fmt.Sprintf("%s-%d.%s", sts.Name, i, svc))
	}
	for _, r := range opts.Routes {
		got = append(got, r.Hostname())
	}
	if !slices.Equal(got, want) {
		t.Errorf("nats.conf: routes %v, want %v", got, want)
	}
	mounted := func(dir string) bool {
		return slices.ContainsFunc(pod.Containers[0].VolumeMounts, func(vm corev1.VolumeMount) bool { return vm.MountPath == dir })
	}
	if !mounted(opts.StoreDir) || !mounted(path.Dir(opts.PidFile)) {
		t.Errorf("nats.conf: store_dir %s and pid_file %s must be on mounted volumes", opts.StoreDir, opts.PidFile)
	}
	// inferq reaches every node on the client port.
	var hosts []string
	for _, u := range strings.Split(cfg.NATS.URL, ",") {
		pu, err := url.Parse(strings.TrimSpace(u))
		if err != nil || pu.Port() != strconv.Itoa(opts.Port) {
			t.Errorf("inferq nats.url %q: want the client port %d", u, opts.Port)
			continue
		}
		hosts = append(hosts, pu.Hostname())
	}
	if !slices.Equal(hosts, want) {
		t.Errorf("inferq nats.url names %v, want every node %v", hosts, want)
	}
	ru, err := url.Parse(cfg.Redis.URL)
	if err != nil || !slices.ContainsFunc(m.services, func(s *corev1.Service) bool {
		return s.Name == ru.Hostname() && slices.ContainsFunc(s.Spec.Ports, func(p corev1.ServicePort) bool { return strconv.Itoa(int(p.Port)) == ru.Port() })
	}) {
		t.Errorf("inferq redis.url %q is not a Service port", cfg.Redis.URL)
	}
}

// kedaJetStreamKeys are the trigger metadata keys of KEDA's nats-jetstream
// scaler (pkg/scalers/nats_jetstream_scaler.go, KEDA v2.21), required or not.
var kedaJetStreamKeys = map[string]bool{
	"natsServerMonitoringEndpoint": true, "account": false, "accountID": false, "stream": true,
	"consumer": true, "lagThreshold": true, "activationLagThreshold": false, "useHttps": false,
}

// TestScaledObject: the GPU workers scale from zero on the jobs waiting
// for their model in the batcher's consumers, woken by its shared consumer
// on INFERQ_BATCHES, read from the NATS monitoring port.
func TestScaledObject(t *testing.T) {
	eachSet(t, func(t *testing.T, set string, m *manifests) {
		cfg := inferqConfig(t, m)
		if set == "keda-off" {
			// Without KEDA the GPU pool has a fixed size, and no object
			// needs KEDA's CRDs.
			w, ok := m.workload("Deployment", "worker-gpu")
			if len(m.scaled) != 0 || !ok || w.replicas == nil || *w.replicas < 1 {
				t.Errorf("keda.enabled false: %d ScaledObjects, worker-gpu replicas %v; want none and a fixed count", len(m.scaled), w.replicas)
			}
			return
		}
		if len(m.scaled) != 1 {
			t.Fatalf("%d ScaledObjects, want 1 (the GPU workers)", len(m.scaled))
		}
		so := m.scaled[0]
		spec := so.Spec
		// The CRD's validation markers.
		switch {
		case spec.ScaleTargetRef == nil || spec.ScaleTargetRef.Name == "":
			t.Fatal("scaleTargetRef.name is required")
		case len(spec.Triggers) == 0:
			t.Fatal("triggers: at least one is required")
		case spec.PollingInterval != nil && *spec.PollingInterval < 1,
			spec.CooldownPeriod != nil && *spec.CooldownPeriod < 0,
			spec.MaxReplicaCount == nil || *spec.MaxReplicaCount < 1:
			t.Errorf("pollingInterval must be >= 1, cooldownPeriod >= 0 and maxReplicaCount >= 1")
		}
		if spec.MinReplicaCount == nil || *spec.MinReplicaCount != 0 {
			t.Error("minReplicaCount: want 0 (GPU workers scale from zero)")
		}
		ref := spec.ScaleTargetRef
		target, ok := m.workload(ref.Kind, ref.Name)
		if ref.APIVersion != "apps/v1" || ref.Kind != "Deployment" || !ok {
			t.Fatalf("scaleTargetRef %s %s %s is not a Deployment of the manifests", ref.APIVersion, ref.Kind, ref.Name)
		}
		if target.replicas != nil {
			t.Errorf("Deployment %s sets replicas, which would fight the autoscaler on every apply", ref.Name)
		}
		var models []string
		for _, c := range target.pod.Spec.Containers {
			for _, e := range c.Env {
				if e.Name == "INFERQ_WORKER_MODELS" {
					models = strings.Split(e.Value, ",")
				}
			}
			checkResources(t, "scale target "+ref.Name, true, c.Resources)
		}
		topo := jetstream.DefaultTopology()
		topo.Prefix = cfg.NATS.Prefix
		// The installed NATS's headless Service (KEDA finds each node under
		// it), or the external server's monitoring endpoint.
		endpoint := "nats.messaging.svc.cluster.local:8222"
		if set != "external" {
			nats := natsStatefulSet(t, m)
			monitor := portOf(t, nats.Spec.Template.Spec, "monitor")
			endpoint = net.JoinHostPort(fmt.Sprintf("%s.%s.svc.cluster.local", nats.Spec.ServiceName, so.Namespace), strconv.Itoa(int(monitor)))
		}
		// The triggers are internal/scaling's for every served model: its
		// batcher consumers sized by max_batch_size, its workers consumer only
		// to wake (docs/scaling.md).
		var got, want []scaling.Trigger
		for _, mod := range models {
			mc, ok := cfg.Model(mod)
			if !ok {
				t.Fatalf("the scale target serves %q, which the config lacks", mod)
			}
			want = append(want, scaling.Triggers(topo, mod, mc.Batching.MaxBatchSize)...)
		}
		for _, tr := range spec.Triggers {
			if tr.Type != "nats-jetstream" {
				t.Errorf("trigger %q: want nats-jetstream", tr.Type)
				continue
			}
			for k := range tr.Metadata {
				if _, ok := kedaJetStreamKeys[k]; !ok {
					t.Errorf("trigger metadata %q is not a nats-jetstream parameter", k)
				}
			}
			for k, required := range kedaJetStreamKeys {
				if required && tr.Metadata[k] == "" {
					t.Errorf("trigger metadata %q is required", k)
				}
			}
			md := tr.Metadata
			if md["natsServerMonitoringEndpoint"] != endpoint {
				t.Errorf("natsServerMonitoringEndpoint %q, want %q (the headless Service: KEDA finds each node under it)",
					md["natsServerMonitoringEndpoint"], endpoint)
			}
			got = append(got, scaling.Trigger{Stream: md["stream"], Consumer: md["consumer"]})
			got[len(got)-1].LagThreshold, _ = strconv.ParseInt(md["lagThreshold"], 10, 64)
			got[len(got)-1].ActivationLagThreshold, _ = strconv.ParseInt(md["activationLagThreshold"], 10, 64)
			for _, k := range []string{"lagThreshold", "activationLagThreshold"} {
				if v, ok := md[k]; ok {
					if n, err := strconv.Atoi(v); err != nil || n < 0 || (k == "lagThreshold" && n < 1) {
						t.Errorf("%s %q: want a positive integer", k, v)
					}
				}
			}
			if v, ok := md["useHttps"]; ok && v != "true" && v != "false" {
				t.Errorf("useHttps %q: want true or false", v)
			}
		}
		if !slices.Equal(got, want) {
			t.Errorf("triggers (stream, consumer, lagThreshold, activationLagThreshold):\n got %v\nwant %v", got, want)
		}
	})
}

// secretValues stand in for Secret inferq-nats, which the operator creates
// (deploy/README.md): a value per key.
type secretValues map[string]string

func newSecretValues(t *testing.T) secretValues {
	t.Helper()
	issuer, err := nkeys.CreateAccount()
	if err != nil {
		t.Fatal(err)
	}
	pub, _ := issuer.PublicKey()
	s := secretValues{"callout-issuer": pub}
	for _, role := range natsauth.Roles {
		s[role+"-password"] = role + "-test-password"
	}
	return s
}

func (s secretValues) value(t *testing.T, ref *corev1.SecretKeySelector) string {
	t.Helper()
	v, ok := s[ref.Key]
	if ref.Name != "inferq-nats" || !ok {
		t.Errorf("secret %s key %s: want Secret inferq-nats, one of its keys %v", ref.Name, ref.Key, slices.Sorted(maps.Keys(s)))
	}
	return v
}

// workerRole is the NATS user each inferq binary connects as.
var workerRole = map[string]string{"ingress": natsauth.RoleIngress, "batcher": natsauth.RoleBatcher,
	"resultsvc": natsauth.RoleResultSvc, "inferq-worker": natsauth.RoleWorker}

// TestNATSAuth: the NATS ConfigMap carries natsauth's users, permissions
// and auth callout verbatim; loaded into a real nats-server with the
// Secret's values it refuses anonymous clients and admits each inferq
// container with the user and password its env gives it.
func TestNATSAuth(t *testing.T) {
	m := render(t, "defaults")
	cfg := inferqConfig(t, m)
	w, ok := m.workload("StatefulSet", "nats")
	if !ok {
		t.Fatal("StatefulSet nats missing")
	}
	conf := m.configMaps["nats-config"].Data["nats.conf"]
	svccheck.CheckAuthBlock(t, "nats-config nats.conf", conf, cfg.NATS.Prefix, "")
	file := filepath.Join(t.TempDir(), "nats.conf")
	if err := os.WriteFile(file, []byte(conf), 0o644); err != nil {
		t.Fatal(err)
	}
	secret := newSecretValues(t)
	t.Setenv("POD_NAME", "nats-0")
	for _, e := range w.pod.Spec.Containers[0].Env {
		if e.ValueFrom != nil && e.ValueFrom.SecretKeyRef != nil {
			t.Setenv(e.Name, secret.value(t, e.ValueFrom.SecretKeyRef))
		}
	}
	srv := svccheck.RunNATSConf(t, file, cfg.NATS.Prefix)
	svccheck.RefusesAnonymous(t, srv)
	containers := 0
	for _, wl := range m.workloads() {
		for _, c := range wl.pod.Spec.Containers {
			bin, ok := inferqBinary(c)
			if !ok {
				continue
			}
			containers++
			var user, pw string
			for _, e := range c.Env {
				switch {
				case e.Name == "INFERQ_NATS_USER":
					user = e.Value
				case e.Name == "INFERQ_NATS_PASSWORD" && e.ValueFrom != nil && e.ValueFrom.SecretKeyRef != nil:
					pw = secret.value(t, e.ValueFrom.SecretKeyRef)
				}
			}
			if want := workerRole[bin]; user != want || pw == "" {
				t.Errorf("%s/%s: INFERQ_NATS_USER %q and a password from the Secret: want user %q", wl.name, c.Name, user, want)
				continue
			}
			svccheck.ConnectAs(t, srv, user, pw)
		}
	}
	if containers == 0 {
		t.Error("no inferq container found")
	}
}

// TestIngressGracePeriod: Kubernetes kills an ingress pod only after its
// preStop sleep and its whole drain, so no long-poll is cut. The drain is
// internal/ingress.DrainTimeout: max(max_wait, sync_timeout) + 5s (not
// imported: it would pull the ingress's dependencies into this module).
func TestIngressGracePeriod(t *testing.T) {
	m := render(t, "defaults")
	cfg := inferqConfig(t, m)
	w, ok := m.workload("Deployment", "ingress")
	if !ok {
		t.Fatal("no ingress Deployment")
	}
	var preStop time.Duration
	for _, c := range w.pod.Spec.Containers {
		if c.Lifecycle != nil && c.Lifecycle.PreStop != nil && c.Lifecycle.PreStop.Sleep != nil {
			preStop = max(preStop, time.Duration(c.Lifecycle.PreStop.Sleep.Seconds)*time.Second)
		}
	}
	grace := 30 * time.Second // the Kubernetes default
	if g := w.pod.Spec.TerminationGracePeriodSeconds; g != nil {
		grace = time.Duration(*g) * time.Second
	}
	drain := max(cfg.Ingress.MaxWait.D(), cfg.Ingress.SyncTimeout.D()) + 5*time.Second
	if grace <= preStop+drain {
		t.Errorf("ingress terminationGracePeriodSeconds %v; want above preStop %v + drain %v", grace, preStop, drain)
	}
}

// TestIngressAutoscaling: by default the ingress Deployment leaves its
// replica count to an HPA on CPU with a slow scale-down (a leaving pod drains
// long polls); with autoscaling off it has a fixed count and no HPA.
func TestIngressAutoscaling(t *testing.T) {
	m := render(t, "defaults")
	if len(m.hpas) != 1 {
		t.Fatalf("%d HorizontalPodAutoscalers, want 1 (the ingress)", len(m.hpas))
	}
	h := m.hpas[0]
	if h.Spec.ScaleTargetRef.Kind != "Deployment" || h.Spec.ScaleTargetRef.Name != "ingress" ||
		h.Spec.MinReplicas == nil || *h.Spec.MinReplicas < 2 || h.Spec.MaxReplicas <= *h.Spec.MinReplicas {
		t.Errorf("ingress HPA %+v", h.Spec)
	}
	if len(h.Spec.Metrics) != 1 || h.Spec.Metrics[0].Resource == nil || h.Spec.Metrics[0].Resource.Name != corev1.ResourceCPU {
		t.Errorf("ingress HPA metrics %+v, want CPU", h.Spec.Metrics)
	}
	if b := h.Spec.Behavior; b == nil || b.ScaleDown == nil || b.ScaleDown.StabilizationWindowSeconds == nil || *b.ScaleDown.StabilizationWindowSeconds < 60 {
		t.Errorf("ingress HPA scale-down %+v, want a stabilization window", h.Spec.Behavior)
	}
	for _, d := range m.deployments {
		if d.Name == "ingress" && d.Spec.Replicas != nil {
			t.Errorf("ingress Deployment sets replicas %d under an HPA", *d.Spec.Replicas)
		}
	}
	files, err := renderFiles(t, "ingress: {autoscaling: {enabled: false}}")
	if err != nil {
		t.Fatal(err)
	}
	off := decodeAll(t, "inferq", files)
	if len(off.hpas) != 0 {
		t.Errorf("autoscaling off: %d HPAs", len(off.hpas))
	}
	for _, d := range off.deployments {
		if d.Name == "ingress" && (d.Spec.Replicas == nil || *d.Spec.Replicas != 2) {
			t.Errorf("autoscaling off: ingress replicas %v, want 2", d.Spec.Replicas)
		}
	}
}
