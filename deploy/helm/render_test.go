package helm

import (
	"maps"
	"slices"
	"strings"
	"testing"

	"helm.sh/helm/v3/pkg/chart/loader"
	"helm.sh/helm/v3/pkg/chartutil"
	"helm.sh/helm/v3/pkg/engine"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

// chartDir is the chart the tests render.
const chartDir = "inferq"

// namespace is where the tests install the release (helm -n inferq).
const namespace = "inferq"

// adminKeyHash is sha256("test-admin-key"): the one API key the value sets
// give, since auth is on by default and refuses to render without one.
const adminKeyHash = "944650a7cd0f9e14d5c4fb15edbffb7fa45fb9ed36a4fa9be3d7e5476ae51bd9"

// base are the values every documented install sets (docs/deploy.md): an
// immutable image tag and a credential.
const base = `
image: {tag: v0.1.0}
auth:
  apiKeys:
    - {name: admin, sha256: "` + adminKeyHash + `", tenant: ops, scopes: [admin, submit, read]}
`

// metricsTokenHash is the servicemonitor set's hash of Prometheus's token.
var metricsTokenHash = strings.Repeat("ab", 32)

// valueSets are the documented value sets: name -> values over base.
var valueSets = map[string]string{
	"defaults": ``,
	"external": `
nats:
  install: false
  external:
    url: nats://nats-a.messaging:4222,nats://nats-b.messaging:4222
    monitoringEndpoint: nats.messaging.svc.cluster.local:8222
    networkPolicyPeers: [{namespaceSelector: {matchLabels: {kubernetes.io/metadata.name: messaging}}}]
redis:
  install: false
  external:
    address: redis-master.data:6380
    db: 2
    tls: true
`,
	"auth-off": `
auth: {enabled: false}
`,
	"keda-off": `
keda: {enabled: false}
`,
	"servicemonitor": `
serviceMonitor:
  enabled: true
  labels: {release: kube-prometheus-stack}
  bearerTokenSHA256: "` + metricsTokenHash + `"
`,
}

// renderFiles renders the chart as `helm install -n inferq inferq` would
// with base plus extra values: template name -> text.
func renderFiles(t *testing.T, extra ...string) (map[string]string, error) {
	t.Helper()
	ch, err := loader.Load(chartDir)
	if err != nil {
		t.Fatalf("load chart: %v", err)
	}
	vals := map[string]any{}
	for _, src := range append([]string{base}, extra...) {
		v, err := chartutil.ReadValues([]byte(src))
		if err != nil {
			t.Fatalf("values %q: %v", src, err)
		}
		vals = chartutil.MergeTables(v.AsMap(), vals)
	}
	rv, err := chartutil.ToRenderValues(ch, vals, chartutil.ReleaseOptions{
		Name: "inferq", Namespace: namespace, Revision: 1, IsInstall: true,
	}, chartutil.DefaultCapabilities)
	if err != nil {
		return nil, err
	}
	out, err := engine.Render(ch, rv)
	if err != nil {
		return nil, err
	}
	files := map[string]string{}
	for k, v := range out {
		files[strings.TrimPrefix(k, chartDir+"/templates/")] = v
	}
	return files, nil
}

// render renders and decodes the chart with one value set.
func render(t *testing.T, set string) *manifests {
	t.Helper()
	extra, ok := valueSets[set]
	if !ok {
		t.Fatalf("no value set %q", set)
	}
	files, err := renderFiles(t, extra)
	if err != nil {
		t.Fatalf("value set %s: %v", set, err)
	}
	return decodeAll(t, namespace, files)
}

// eachSet runs f on the rendering of every value set.
func eachSet(t *testing.T, f func(t *testing.T, set string, m *manifests)) {
	for _, set := range slices.Sorted(maps.Keys(valueSets)) {
		t.Run(set, func(t *testing.T) { f(t, set, render(t, set)) })
	}
}

// serviceMonitor is the part of prometheus-operator's monitoring.coreos.com/v1
// ServiceMonitor the chart sets, strictly (an unknown field fails).
type serviceMonitor struct {
	metav1.TypeMeta   `json:",inline"`
	metav1.ObjectMeta `json:"metadata,omitempty"`
	Spec              struct {
		Selector          metav1.LabelSelector `json:"selector"`
		NamespaceSelector struct {
			MatchNames []string `json:"matchNames,omitempty"`
		} `json:"namespaceSelector"`
		Endpoints []struct {
			Port          string `json:"port"`
			Path          string `json:"path"`
			Interval      string `json:"interval,omitempty"`
			Authorization *struct {
				Type        string `json:"type"`
				Credentials struct {
					Name string `json:"name"`
					Key  string `json:"key"`
				} `json:"credentials"`
			} `json:"authorization,omitempty"`
		} `json:"endpoints"`
	} `json:"spec"`
}
