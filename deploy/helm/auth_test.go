package helm

import (
	"crypto/sha256"
	"encoding/hex"
	"os"
	"path"
	"slices"
	"strings"
	"testing"

	corev1 "k8s.io/api/core/v1"

	"github.com/inferq/inferq/deploy/internal/svccheck"
	"github.com/inferq/inferq/internal/auth"
	"github.com/inferq/inferq/internal/natsauth"
)

// TestNATSAuthorizationFile: the block the chart puts in nats.conf (its own
// NATS) or in ConfigMap inferq-nats-auth (an external server) is
// natsauth.ConfAuthorization's, so the table and the chart cannot drift.
func TestNATSAuthorizationFile(t *testing.T) {
	want, err := natsauth.ConfAuthorization("inferq", "")
	if err != nil {
		t.Fatal(err)
	}
	got, err := os.ReadFile(chartDir + "/files/nats-authorization.conf")
	if err != nil {
		t.Fatal(err)
	}
	if string(got) != want {
		t.Errorf("files/nats-authorization.conf differs from natsauth.ConfAuthorization(\"inferq\", \"\"); replace it with:\n%s", want)
	}
	m := render(t, "external")
	if _, ok := m.configMaps["nats-config"]; ok {
		t.Error("external NATS: the chart still renders its own nats-config")
	}
	cm, ok := m.configMaps["inferq-nats-auth"]
	if !ok {
		t.Fatal("external NATS: ConfigMap inferq-nats-auth missing")
	}
	svccheck.CheckAuthBlock(t, "inferq-nats-auth inferq-auth.conf", cm.Data["inferq-auth.conf"], "inferq", "")
}

// secretMount finds where a container mounts key of Secret name.
func secretMount(pod corev1.PodSpec, c corev1.Container, name, key string) (string, bool) {
	for _, v := range pod.Volumes {
		if v.Secret == nil || v.Secret.SecretName != name {
			continue
		}
		for _, vm := range c.VolumeMounts {
			if vm.Name != v.Name {
				continue
			}
			if len(v.Secret.Items) == 0 {
				return path.Join(vm.MountPath, key), true
			}
			for _, it := range v.Secret.Items {
				if it.Key == key {
					return path.Join(vm.MountPath, it.Path), true
				}
			}
		}
	}
	return "", false
}

// TestAuth: auth is on by default with the values' key hashes; the ingress
// answers the NATS auth callout with the seed it mounts from Secret
// inferq-nats at the path the config names. With auth off neither is there.
func TestAuth(t *testing.T) {
	for _, set := range []string{"defaults", "auth-off", "servicemonitor"} {
		t.Run(set, func(t *testing.T) {
			m := render(t, set)
			cfg := inferqConfig(t, m)
			ing, ok := m.workload("Deployment", "ingress")
			if !ok {
				t.Fatal("Deployment ingress missing")
			}
			seed, mounted := secretMount(ing.pod.Spec, ing.pod.Spec.Containers[0], "inferq-nats", "callout-issuer-seed")
			if set == "auth-off" {
				if cfg.Auth.Enabled || cfg.NATS.AuthCallout.IssuerSeedFile != "" || mounted {
					t.Errorf("auth.enabled false: config auth %v, callout seed %q, mounted %v; want all off",
						cfg.Auth.Enabled, cfg.NATS.AuthCallout.IssuerSeedFile, mounted)
				}
				return
			}
			if !cfg.Auth.Enabled || !slices.ContainsFunc(cfg.Auth.APIKeys, func(k auth.APIKey) bool { return k.SHA256 == adminKeyHash }) {
				t.Errorf("auth: enabled %v, keys %v; want on with the values' key", cfg.Auth.Enabled, cfg.Auth.APIKeys)
			}
			if !mounted || seed != cfg.NATS.AuthCallout.IssuerSeedFile {
				t.Errorf("nats.auth_callout.issuer_seed_file %q, callout-issuer-seed mounted at %q (%v): want the same file",
					cfg.NATS.AuthCallout.IssuerSeedFile, seed, mounted)
			}
			for _, w := range m.workloads() {
				if w.name == "ingress" {
					continue
				}
				for _, c := range w.pod.Spec.Containers {
					if _, ok := secretMount(w.pod.Spec, c, "inferq-nats", "callout-issuer-seed"); ok {
						t.Errorf("%s/%s mounts the callout seed; only the ingress signs", w.name, c.Name)
					}
				}
			}
			if set != "servicemonitor" {
				if len(m.monitors) != 0 {
					t.Errorf("%d ServiceMonitors, want none unless serviceMonitor.enabled", len(m.monitors))
				}
				return
			}
			checkServiceMonitor(t, m, cfg.Auth.APIKeys)
		})
	}
}

// checkServiceMonitor: Prometheus scrapes the ingress Service's /metrics
// with the bearer token of Secret inferq-metrics, which the config admits
// with the admin scope (/metrics needs it when auth is on).
func checkServiceMonitor(t *testing.T, m *manifests, keys []auth.APIKey) {
	t.Helper()
	if len(m.monitors) != 1 {
		t.Fatalf("%d ServiceMonitors, want 1", len(m.monitors))
	}
	sm := m.monitors[0]
	if sm.Labels["release"] != "kube-prometheus-stack" {
		t.Errorf("ServiceMonitor labels %v lack serviceMonitor.labels", sm.Labels)
	}
	i := slices.IndexFunc(m.services, func(s *corev1.Service) bool { return selects(sm.Spec.Selector.MatchLabels, s.Labels) })
	if i < 0 || m.services[i].Name != "ingress" || !slices.Equal(sm.Spec.NamespaceSelector.MatchNames, []string{m.ns}) {
		t.Fatalf("ServiceMonitor selects %v in %v: want the ingress Service", sm.Spec.Selector.MatchLabels, sm.Spec.NamespaceSelector.MatchNames)
	}
	if len(sm.Spec.Endpoints) != 1 {
		t.Fatalf("%d endpoints, want 1", len(sm.Spec.Endpoints))
	}
	ep := sm.Spec.Endpoints[0]
	if !slices.ContainsFunc(m.services[i].Spec.Ports, func(p corev1.ServicePort) bool { return p.Name == ep.Port }) || ep.Path != "/metrics" {
		t.Errorf("endpoint port %q path %q: want a port of Service ingress and /metrics", ep.Port, ep.Path)
	}
	a := ep.Authorization
	if a == nil || a.Type != "Bearer" || a.Credentials.Name != "inferq-metrics" || a.Credentials.Key != "token" {
		t.Errorf("endpoint authorization %+v: want Bearer from Secret inferq-metrics key token", a)
	}
	k := slices.IndexFunc(keys, func(k auth.APIKey) bool { return k.Name == "prometheus" })
	if k < 0 || !slices.Contains(keys[k].Scopes, auth.ScopeAdmin) || keys[k].SHA256 != metricsTokenHash {
		t.Errorf("API keys %v: want %q with scope admin and serviceMonitor.bearerTokenSHA256", keys, "prometheus")
	}
}

// TestConfigChecksum: every inferq pod carries the sha256 of the rendered
// inferq-config, so `helm upgrade` with another model or config key rolls
// the pods (a ConfigMap edit alone restarts nothing).
func TestConfigChecksum(t *testing.T) {
	sums := func(extra string) map[string]string {
		files, err := renderFiles(t, extra)
		if err != nil {
			t.Fatal(err)
		}
		sum := sha256.Sum256([]byte(files["config.yaml"]))
		m := decodeAll(t, namespace, files)
		out := map[string]string{}
		for _, w := range m.workloads() {
			if _, ok := inferqBinary(w.pod.Spec.Containers[0]); !ok {
				continue
			}
			got := w.pod.Annotations["checksum/config"]
			if got != hex.EncodeToString(sum[:]) {
				t.Errorf("%s: checksum/config %q, want the sha256 of templates/config.yaml", w.name, got)
			}
			out[w.name] = got
		}
		if len(out) != 5 {
			t.Errorf("%d inferq workloads carry the checksum, want 5", len(out))
		}
		return out
	}
	before := sums("")
	after := sums("config: {ingress: {max_wait: 30s}}")
	for name, sum := range before {
		if after[name] == sum {
			t.Errorf("%s: checksum/config unchanged by a config change; its pods would not roll", name)
		}
	}
	if !strings.Contains(mustRender(t, "config: {ingress: {max_wait: 30s}}")["config.yaml"], "max_wait: 30s") {
		t.Error("config values are not merged into inferq.yaml")
	}
}

func mustRender(t *testing.T, extra string) map[string]string {
	t.Helper()
	files, err := renderFiles(t, extra)
	if err != nil {
		t.Fatal(err)
	}
	return files
}
