// Package compose holds the Compose deployment. Its tests validate
// compose.yaml against the Compose Specification's JSON schema and check
// what no schema can: that every file it names exists, host ports are
// unique, INFERQ_* variables are real, and the NATS, Prometheus, Grafana,
// OpenTelemetry and HAProxy configs agree with the services.
package compose

import (
	"bufio"
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

	"github.com/compose-spec/compose-go/v2/schema"
	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nkeys"
	"gopkg.in/yaml.v3"

	"github.com/inferq/inferq/deploy/internal/svccheck"
	"github.com/inferq/inferq/internal/config"
	"github.com/inferq/inferq/internal/natsauth"
)

// composeFile is the part of the Compose model the checks read, decoded
// after the schema has validated the whole file.
type composeFile struct {
	Services map[string]service `yaml:"services"`
	Volumes  map[string]any     `yaml:"volumes"`
}

type service struct {
	Image string `yaml:"image"`
	Build *struct {
		Context    string `yaml:"context"`
		Dockerfile string `yaml:"dockerfile"`
		Target     string `yaml:"target"`
	} `yaml:"build"`
	Entrypoint  []string          `yaml:"entrypoint"`
	Command     []string          `yaml:"command"`
	Environment map[string]string `yaml:"environment"`
	Ports       []string          `yaml:"ports"`
	Expose      []string          `yaml:"expose"`
	Volumes     []string          `yaml:"volumes"`
	DependsOn   any               `yaml:"depends_on"`
	Healthcheck *struct {
		Test []string `yaml:"test"`
	} `yaml:"healthcheck"`
	Profiles        []string `yaml:"profiles"`
	StopGracePeriod string   `yaml:"stop_grace_period"`
	Deploy          *struct {
		Replicas *int `yaml:"replicas"`
	} `yaml:"deploy"`
}

// inferq reports whether s runs one of inferq's binaries, and which.
func (s service) inferq() (string, bool) {
	if s.Build == nil || len(s.Entrypoint) == 0 {
		return "", false
	}
	bin := path.Base(s.Entrypoint[0])
	return bin, slices.Contains(svccheck.Binaries, bin)
}

// mount is a short-syntax volume: a bind mount when Source is a path.
type mount struct{ Source, Target string }

func (s service) mounts() []mount {
	var out []mount
	for _, v := range s.Volumes {
		parts := strings.Split(v, ":")
		if len(parts) >= 2 {
			out = append(out, mount{Source: parts[0], Target: parts[1]})
		}
	}
	return out
}

func isBind(src string) bool { return strings.HasPrefix(src, ".") || strings.HasPrefix(src, "/") }

// bindSource returns the host path mounted at target, if any.
func (s service) bindSource(target string) (string, bool) {
	for _, m := range s.mounts() {
		if m.Target == target && isBind(m.Source) {
			return m.Source, true
		}
	}
	return "", false
}

// servedPorts are the container ports s listens on: its expose list, the
// container side of its published ports, and for an inferq binary the port
// its config gives it.
func (s service) servedPorts(t *testing.T, cfg config.Config) map[int]bool {
	t.Helper()
	ports := map[int]bool{}
	for _, e := range s.Expose {
		if n, err := strconv.Atoi(e); err == nil {
			ports[n] = true
		}
	}
	for _, p := range s.Ports {
		_, container := splitPort(p)
		ports[container] = true
	}
	if bin, ok := s.inferq(); ok {
		if n, err := svccheck.ServePort(cfg, bin); err == nil {
			ports[n] = true
		}
	}
	return ports
}

// splitPort splits "host:container" (or "ip:host:container"); host is ""
// when none is published.
func splitPort(p string) (host string, container int) {
	p = strings.TrimSuffix(strings.TrimSuffix(p, "/tcp"), "/udp")
	parts := strings.Split(p, ":")
	container, _ = strconv.Atoi(parts[len(parts)-1])
	if len(parts) >= 2 {
		host = strings.Join(parts[:len(parts)-1], ":")
	}
	return host, container
}

func (s service) replicas() int {
	if s.Deploy != nil && s.Deploy.Replicas != nil {
		return *s.Deploy.Replicas
	}
	return 1
}

// dependsOn returns the services s depends on, with their conditions.
func (s service) dependsOn() map[string]string {
	out := map[string]string{}
	switch d := s.DependsOn.(type) {
	case []any:
		for _, n := range d {
			out[fmt.Sprint(n)] = "service_started"
		}
	case map[string]any:
		for n, v := range d {
			cond := "service_started"
			if m, ok := v.(map[string]any); ok && m["condition"] != nil {
				cond = fmt.Sprint(m["condition"])
			}
			out[n] = cond
		}
	}
	return out
}

func readCompose(t *testing.T) (map[string]any, composeFile) {
	t.Helper()
	b, err := os.ReadFile("compose.yaml")
	if err != nil {
		t.Fatal(err)
	}
	// yaml.v3 resolves anchors and merge keys as Compose does.
	var raw map[string]any
	if err := yaml.Unmarshal(b, &raw); err != nil {
		t.Fatalf("compose.yaml: %v", err)
	}
	var cf composeFile
	if err := yaml.Unmarshal(b, &cf); err != nil {
		t.Fatalf("compose.yaml: %v", err)
	}
	return raw, cf
}

func loadConfig(t *testing.T) config.Config {
	t.Helper()
	cfg, err := config.Load("inferq.yaml")
	if err != nil {
		t.Fatalf("inferq.yaml: %v", err)
	}
	return cfg
}

func TestComposeSchema(t *testing.T) {
	raw, _ := readCompose(t)
	if err := schema.Validate(raw); err != nil {
		t.Fatalf("compose.yaml does not follow the Compose Specification: %v", err)
	}
}

func TestComposeTopology(t *testing.T) {
	_, cf := readCompose(t)
	count := func(prefix string) int {
		n := 0
		for name, s := range cf.Services {
			if strings.HasPrefix(name, prefix) {
				n += s.replicas()
			}
		}
		return n
	}
	for _, want := range []struct {
		prefix string
		n      int
	}{
		{"nats-", 3 + 1}, // three nodes and the exporter
		{"ingress", 2}, {"batcher", 2}, {"resultsvc", 1}, {"worker-cpu", 1}, {"worker-gpu", 1},
		{"redis", 1 + 1}, {"lb", 1}, {"prometheus", 1}, {"grafana", 1}, {"otel-collector", 1}, {"jaeger", 1},
	} {
		if got := count(want.prefix); got != want.n {
			t.Errorf("%s*: %d containers, want %d", want.prefix, got, want.n)
		}
	}
	gpu := cf.Services["worker-gpu"]
	raw, _ := readCompose(t)
	devices := dig(raw, "services", "worker-gpu", "deploy", "resources", "reservations", "devices")
	if list, ok := devices.([]any); !ok || len(list) == 0 || dig(list[0], "driver") != "nvidia" {
		t.Errorf("worker-gpu: want an nvidia device reservation, got %v", devices)
	}
	if bin, ok := gpu.inferq(); !ok || bin != "inferq-worker" {
		t.Errorf("worker-gpu: runs %q, want the worker agent", bin)
	}
}

// dig walks nested maps and lists by key.
func dig(v any, keys ...string) any {
	for _, k := range keys {
		m, ok := v.(map[string]any)
		if !ok {
			return nil
		}
		v = m[k]
	}
	return v
}

func TestComposeFilesExist(t *testing.T) {
	_, cf := readCompose(t)
	built := map[string]bool{}
	for name, s := range cf.Services {
		if b := s.Build; b != nil && !built[b.Context+b.Dockerfile+b.Target] {
			built[b.Context+b.Dockerfile+b.Target] = true
			checkBuild(t, name, b.Context, b.Dockerfile, b.Target)
		}
		for _, m := range s.mounts() {
			if isBind(m.Source) {
				if _, err := os.Stat(m.Source); err != nil {
					t.Errorf("service %s: bind mount: %v", name, err)
				}
			} else if _, ok := cf.Volumes[m.Source]; !ok {
				t.Errorf("service %s: volume %q is not declared under volumes:", name, m.Source)
			}
		}
	}
}

var (
	fromLine = regexp.MustCompile(`(?i)^FROM\s+\S+\s+AS\s+(\S+)`)
	copyLine = regexp.MustCompile(`(?i)^COPY\s+(.*)$`)
)

// checkBuild checks that the Dockerfile has the target stage and that the
// sources of its COPY instructions (those not from another stage) exist in
// the build context.
func checkBuild(t *testing.T, svc, context, dockerfile, target string) {
	t.Helper()
	df := filepath.Join(context, dockerfile)
	b, err := os.ReadFile(df)
	if err != nil {
		t.Errorf("service %s: %v", svc, err)
		return
	}
	var stages []string
	sc := bufio.NewScanner(bytes.NewReader(b))
	for sc.Scan() {
		line := strings.TrimSpace(sc.Text())
		if m := fromLine.FindStringSubmatch(line); m != nil {
			stages = append(stages, m[1])
		}
		m := copyLine.FindStringSubmatch(line)
		if m == nil || strings.Contains(m[1], "--from=") {
			continue
		}
		f := strings.Fields(m[1])
		for _, src := range f[:len(f)-1] {
			if strings.HasPrefix(src, "--") {
				continue
			}
			if _, err := os.Stat(filepath.Join(context, src)); err != nil {
				t.Errorf("service %s: %s: COPY source: %v", svc, df, err)
			}
		}
	}
	if !slices.Contains(stages, target) {
		t.Errorf("service %s: %s has no stage %q (stages %v)", svc, df, target, stages)
	}
}

func TestComposePorts(t *testing.T) {
	_, cf := readCompose(t)
	used := map[string]string{}
	for name, s := range cf.Services {
		for _, p := range s.Ports {
			host, _ := splitPort(p)
			if host == "" {
				continue
			}
			if s.replicas() > 1 {
				t.Errorf("service %s: %d replicas cannot share host port %s", name, s.replicas(), host)
			}
			if other, dup := used[host]; dup {
				t.Errorf("host port %s is published by %s and %s", host, other, name)
			}
			used[host] = name
		}
	}
}

func TestComposeDependsOn(t *testing.T) {
	_, cf := readCompose(t)
	for name, s := range cf.Services {
		for dep, cond := range s.dependsOn() {
			d, ok := cf.Services[dep]
			if !ok {
				t.Errorf("service %s depends on unknown service %s", name, dep)
				continue
			}
			if cond == "service_healthy" && d.Healthcheck == nil {
				t.Errorf("service %s waits for %s to be healthy, which has no healthcheck", name, dep)
			}
			if len(d.Profiles) > 0 && len(s.Profiles) == 0 {
				t.Errorf("service %s depends on %s, which runs only with profiles %v", name, dep, d.Profiles)
			}
		}
	}
}

// TestComposeInferqConfig: the config loads, every INFERQ_* variable is one
// inferq reads, and each inferq container's config (file plus its
// variables) is valid and serves on a port the service exposes.
func TestComposeInferqConfig(t *testing.T) {
	loadConfig(t)
	known, err := svccheck.KnownEnv("../..")
	if err != nil {
		t.Fatal(err)
	}
	_, cf := readCompose(t)
	inferqServices := 0
	for name, s := range cf.Services {
		for k := range s.Environment {
			if strings.HasPrefix(k, "INFERQ_") && !known[k] {
				t.Errorf("service %s: %s is not read by inferq (known: %v)", name, k, svccheck.Names(known))
			}
		}
		bin, ok := s.inferq()
		if !ok {
			continue
		}
		inferqServices++
		cfgPath := s.Environment["INFERQ_CONFIG"]
		src, mounted := s.bindSource(cfgPath)
		if cfgPath == "" || !mounted {
			t.Errorf("service %s: INFERQ_CONFIG %q is not a mounted file", name, cfgPath)
			continue
		}
		cfg, err := svccheck.ContainerConfig(src, s.Environment)
		if err != nil {
			t.Errorf("service %s: %v", name, err)
			continue
		}
		port, err := svccheck.ServePort(cfg, bin)
		if err != nil {
			t.Errorf("service %s: %v", name, err)
		} else if !slices.Contains(s.Expose, strconv.Itoa(port)) {
			t.Errorf("service %s: serves on %d, which is not in expose %v", name, port, s.Expose)
		}
		if bin == "inferq-worker" && len(cfg.Worker.Models) == 0 {
			t.Errorf("service %s: a worker should name its models (INFERQ_WORKER_MODELS)", name)
		}
	}
	if inferqServices == 0 {
		t.Error("no inferq service found")
	}
}

// TestComposeNATS parses nats.conf with nats-server itself, as each node
// would, and checks it against the services and the inferq config.
func TestComposeNATS(t *testing.T) {
	_, cf := readCompose(t)
	cfg := loadConfig(t)
	var nodes []string
	for name, s := range cf.Services {
		if strings.HasPrefix(s.Image, "nats:") {
			nodes = append(nodes, name)
		}
	}
	slices.Sort(nodes)
	if len(nodes) != cfg.NATS.Replicas {
		t.Errorf("%d NATS nodes for R%d streams: want as many nodes as replicas", len(nodes), cfg.NATS.Replicas)
	}
	var clientPort int
	for _, name := range nodes {
		s := cf.Services[name]
		src, ok := s.bindSource("/etc/nats/nats.conf")
		if !ok || !slices.Equal(s.Command, []string{"--config", "/etc/nats/nats.conf"}) {
			t.Errorf("%s: want nats.conf mounted at /etc/nats/nats.conf and --config naming it", name)
			continue
		}
		env := newTestEnv(t)
		for k, v := range s.Environment {
			t.Setenv(k, env.resolve(t, v))
		}
		opts, err := server.ProcessConfigFile(src)
		if err != nil {
			t.Errorf("%s: %s: %v", name, src, err)
			continue
		}
		if !opts.SyncAlways && (opts.SyncInterval <= 0 || opts.SyncInterval > time.Second) {
			t.Errorf("%s: jetstream sync_interval %v: want it named, always or at most 1s", name, opts.SyncInterval)
		}
		if opts.ServerName != name || !opts.JetStream || opts.HTTPPort != 8222 {
			t.Errorf("%s: server_name %q, jetstream %v, monitoring port %d: want %s, true, 8222",
				name, opts.ServerName, opts.JetStream, opts.HTTPPort, name)
		}
		var routes []string
		for _, r := range opts.Routes {
			if r.Port() != strconv.Itoa(opts.Cluster.Port) {
				t.Errorf("%s: route %s: port is not the cluster port %d", name, r, opts.Cluster.Port)
			}
			routes = append(routes, r.Hostname())
		}
		slices.Sort(routes)
		if !slices.Equal(routes, nodes) {
			t.Errorf("%s: routes to %v, want every node %v", name, routes, nodes)
		}
		served := s.servedPorts(t, cfg)
		for _, p := range []int{opts.Port, opts.Cluster.Port, opts.HTTPPort} {
			if !served[p] {
				t.Errorf("%s: port %d is not exposed", name, p)
			}
		}
		clientPort = opts.Port
	}
	var urls []string
	for _, u := range strings.Split(cfg.NATS.URL, ",") {
		pu, err := url.Parse(strings.TrimSpace(u))
		if err != nil || pu.Port() != strconv.Itoa(clientPort) || !slices.Contains(nodes, pu.Hostname()) {
			t.Errorf("inferq.yaml: nats.url %q: want a node's client port %d", u, clientPort)
			continue
		}
		urls = append(urls, pu.Hostname())
	}
	slices.Sort(urls)
	if !slices.Equal(urls, nodes) {
		t.Errorf("inferq.yaml: nats.url names %v, want every node %v", urls, nodes)
	}
}

// prometheusConfig is the subset of Prometheus's configuration file used
// here; an unknown key fails the decode.
type prometheusConfig struct {
	Global struct {
		ScrapeInterval     string            `yaml:"scrape_interval"`
		EvaluationInterval string            `yaml:"evaluation_interval"`
		ExternalLabels     map[string]string `yaml:"external_labels"`
	} `yaml:"global"`
	RuleFiles     []string `yaml:"rule_files"`
	ScrapeConfigs []struct {
		JobName       string `yaml:"job_name"`
		MetricsPath   string `yaml:"metrics_path"`
		StaticConfigs []struct {
			Targets []string          `yaml:"targets"`
			Labels  map[string]string `yaml:"labels"`
		} `yaml:"static_configs"`
		DNSSDConfigs []struct {
			Names []string `yaml:"names"`
			Type  string   `yaml:"type"`
			Port  int      `yaml:"port"`
		} `yaml:"dns_sd_configs"`
		RelabelConfigs []struct {
			SourceLabels []string `yaml:"source_labels"`
			TargetLabel  string   `yaml:"target_label"`
			Regex        string   `yaml:"regex"`
			Replacement  string   `yaml:"replacement"`
			Action       string   `yaml:"action"`
		} `yaml:"relabel_configs"`
	} `yaml:"scrape_configs"`
}

// notScraped are services Prometheus reaches through another one.
var notScraped = map[string]string{
	"nats-1": "its exporter, nats-exporter",
	"nats-2": "its exporter, nats-exporter",
	"nats-3": "its exporter, nats-exporter",
	"redis":  "its exporter, redis-exporter",
}

func readStrictYAML(t *testing.T, file string, v any) {
	t.Helper()
	b, err := os.ReadFile(file)
	if err != nil {
		t.Fatal(err)
	}
	dec := yaml.NewDecoder(bytes.NewReader(b))
	dec.KnownFields(true)
	if err := dec.Decode(v); err != nil {
		t.Fatalf("%s: %v", file, err)
	}
}

// TestComposePrometheus: every service is scraped, every target is a
// service port that serves, and the rule files are mounted.
func TestComposePrometheus(t *testing.T) {
	_, cf := readCompose(t)
	cfg := loadConfig(t)
	prom := cf.Services["prometheus"]
	src, ok := prom.bindSource("/etc/prometheus/prometheus.yml")
	if !ok {
		t.Fatal("prometheus: prometheus.yml is not mounted at /etc/prometheus/prometheus.yml")
	}
	var pc prometheusConfig
	readStrictYAML(t, src, &pc)
	for _, rf := range pc.RuleFiles {
		if _, ok := prom.bindSource(rf); !ok {
			t.Errorf("prometheus.yml: rule file %s is not mounted into the prometheus service", rf)
		}
	}
	scraped := map[string]bool{}
	target := func(job, host string, port int) {
		if host == "localhost" {
			host = "prometheus"
		}
		s, ok := cf.Services[host]
		if !ok {
			t.Errorf("job %s: target %s is not a service", job, host)
			return
		}
		if !s.servedPorts(t, cfg)[port] {
			t.Errorf("job %s: %s does not serve port %d", job, host, port)
		}
		scraped[host] = true
	}
	jobs := map[string]bool{}
	for _, sc := range pc.ScrapeConfigs {
		if jobs[sc.JobName] {
			t.Errorf("job %s defined twice", sc.JobName)
		}
		jobs[sc.JobName] = true
		for _, st := range sc.StaticConfigs {
			for _, tg := range st.Targets {
				host, port, err := net.SplitHostPort(tg)
				n, _ := strconv.Atoi(port)
				if err != nil || n == 0 {
					t.Errorf("job %s: target %q: want host:port", sc.JobName, tg)
					continue
				}
				target(sc.JobName, host, n)
			}
		}
		for _, dns := range sc.DNSSDConfigs {
			if dns.Type != "A" || dns.Port == 0 {
				t.Errorf("job %s: dns_sd_configs: want type A and a port", sc.JobName)
			}
			for _, n := range dns.Names {
				target(sc.JobName, n, dns.Port)
			}
		}
	}
	for name := range cf.Services {
		if !scraped[name] && notScraped[name] == "" {
			t.Errorf("service %s is not scraped by Prometheus", name)
		}
	}
}

func TestComposeGrafana(t *testing.T) {
	_, cf := readCompose(t)
	g := cf.Services["grafana"]
	prov, ok := g.bindSource("/etc/grafana/provisioning")
	if !ok {
		t.Fatal("grafana: provisioning is not mounted at /etc/grafana/provisioning")
	}
	var ds struct {
		Datasources []struct {
			Type, URL string
		} `yaml:"datasources"`
	}
	b, err := os.ReadFile(filepath.Join(prov, "datasources", "datasources.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	if err := yaml.Unmarshal(b, &ds); err != nil {
		t.Fatalf("datasources.yaml: %v", err)
	}
	for _, d := range ds.Datasources {
		u, err := url.Parse(d.URL)
		port, _ := strconv.Atoi(u.Port())
		if err != nil || !slices.Contains(cf.Services[u.Hostname()].Expose, u.Port()) || port == 0 {
			t.Errorf("data source %s: %s is not an exposed service port", d.Type, d.URL)
		}
	}
	var dp struct {
		Providers []struct {
			Options struct{ Path string } `yaml:"options"`
		} `yaml:"providers"`
	}
	b, err = os.ReadFile(filepath.Join(prov, "dashboards", "dashboards.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	if err := yaml.Unmarshal(b, &dp); err != nil {
		t.Fatalf("dashboards.yaml: %v", err)
	}
	for _, p := range dp.Providers {
		src, ok := g.bindSource(p.Options.Path)
		if !ok {
			t.Errorf("dashboard provider path %s is not mounted into grafana", p.Options.Path)
			continue
		}
		if files, _ := filepath.Glob(filepath.Join(src, "*.json")); len(files) == 0 {
			t.Errorf("dashboard provider path %s (%s) holds no dashboards", p.Options.Path, src)
		}
	}
	home := g.Environment["GF_DASHBOARDS_DEFAULT_HOME_DASHBOARD_PATH"]
	if dir, ok := g.bindSource(path.Dir(home)); home != "" && (!ok || !fileExists(filepath.Join(dir, path.Base(home)))) {
		t.Errorf("grafana: home dashboard %s is not a mounted file", home)
	}
}

func fileExists(p string) bool { _, err := os.Stat(p); return err == nil }

// otelConfig is the collector's configuration layout: components by id
// ("type" or "type/name") and the pipelines wiring them.
type otelConfig struct {
	Receivers  map[string]map[string]any `yaml:"receivers"`
	Processors map[string]map[string]any `yaml:"processors"`
	Exporters  map[string]map[string]any `yaml:"exporters"`
	Extensions map[string]map[string]any `yaml:"extensions"`
	Connectors map[string]map[string]any `yaml:"connectors"`
	Service    struct {
		Extensions []string `yaml:"extensions"`
		Pipelines  map[string]struct {
			Receivers  []string `yaml:"receivers"`
			Processors []string `yaml:"processors"`
			Exporters  []string `yaml:"exporters"`
		} `yaml:"pipelines"`
		Telemetry map[string]any `yaml:"telemetry"`
	} `yaml:"service"`
}

func TestComposeOTel(t *testing.T) {
	_, cf := readCompose(t)
	col := cf.Services["otel-collector"]
	var cfgPath string
	for _, c := range col.Command {
		if p, ok := strings.CutPrefix(c, "--config="); ok {
			cfgPath = p
		}
	}
	src, ok := col.bindSource(cfgPath)
	if !ok {
		t.Fatalf("otel-collector: --config %q is not a mounted file", cfgPath)
	}
	var oc otelConfig
	readStrictYAML(t, src, &oc)
	for _, e := range oc.Service.Extensions {
		if _, ok := oc.Extensions[e]; !ok {
			t.Errorf("collector: service.extensions names undefined %s", e)
		}
	}
	if len(oc.Service.Pipelines) == 0 {
		t.Error("collector: no pipelines")
	}
	for name, p := range oc.Service.Pipelines {
		for kind, ids := range map[string][]string{"receivers": p.Receivers, "processors": p.Processors, "exporters": p.Exporters} {
			defined := map[string]map[string]map[string]any{"receivers": oc.Receivers, "processors": oc.Processors, "exporters": oc.Exporters}[kind]
			for _, id := range ids {
				if _, ok := defined[id]; !ok {
					t.Errorf("collector: pipeline %s: %s %s is not defined", name, kind, id)
				}
			}
		}
	}
	// Spans reach Jaeger, and the services reach the collector.
	for id, e := range oc.Exporters {
		ep, _ := e["endpoint"].(string)
		host, port, err := net.SplitHostPort(ep)
		if err != nil || !slices.Contains(cf.Services[host].Expose, port) {
			t.Errorf("collector: exporter %s: endpoint %q is not an exposed service port", id, ep)
		}
	}
	httpRecv := fmt.Sprint(dig(oc.Receivers["otlp"], "protocols", "http", "endpoint"))
	_, recvPort, _ := net.SplitHostPort(httpRecv)
	for name, s := range cf.Services {
		ep, ok := s.Environment["OTEL_EXPORTER_OTLP_ENDPOINT"]
		if !ok {
			continue
		}
		u, err := url.Parse(ep)
		if err != nil || u.Hostname() != "otel-collector" || u.Port() != recvPort {
			t.Errorf("service %s: OTEL_EXPORTER_OTLP_ENDPOINT %q: want the collector's OTLP/HTTP port %s", name, ep, recvPort)
		}
	}
}

// TestComposeHAProxy: the load balancer's backends are the ingress
// replicas on their API port, health-checked on /readyz.
func TestComposeHAProxy(t *testing.T) {
	_, cf := readCompose(t)
	cfg := loadConfig(t)
	lb := cf.Services["lb"]
	src, ok := lb.bindSource("/usr/local/etc/haproxy/haproxy.cfg")
	if !ok {
		t.Fatal("lb: haproxy.cfg is not mounted at /usr/local/etc/haproxy/haproxy.cfg")
	}
	b, err := os.ReadFile(src)
	if err != nil {
		t.Fatal(err)
	}
	apiPort, err := svccheck.ServePort(cfg, "ingress")
	if err != nil {
		t.Fatal(err)
	}
	var servers, binds int
	healthChecked := false
	for _, line := range strings.Split(string(b), "\n") {
		f := strings.Fields(line)
		if len(f) == 0 {
			continue
		}
		switch {
		case f[0] == "server-template" && len(f) >= 4, f[0] == "server" && len(f) >= 3:
			addr := f[2] // server NAME ADDR ...
			if f[0] == "server-template" {
				addr = f[3] // server-template PREFIX COUNT ADDR ...
			}
			host, port, err := net.SplitHostPort(addr)
			if err != nil || host != "ingress" || port != strconv.Itoa(apiPort) {
				t.Errorf("haproxy.cfg: %q: want ingress:%d", strings.TrimSpace(line), apiPort)
			}
			servers++
		case f[0] == "bind" && len(f) >= 2:
			_, port, _ := net.SplitHostPort(f[1])
			if !slices.Contains(lb.Expose, port) {
				t.Errorf("haproxy.cfg: bind %s: port not in lb's expose %v", f[1], lb.Expose)
			}
			binds++
		case f[0] == "option" && len(f) >= 4 && f[1] == "httpchk":
			healthChecked = f[3] == "/readyz"
		}
	}
	if servers == 0 || binds == 0 || !healthChecked {
		t.Errorf("haproxy.cfg: %d server lines, %d binds, /readyz health check %v", servers, binds, healthChecked)
	}
}

// testEnv stands in for the operator's environment: a value for each
// variable compose.yaml interpolates (${VAR:?...}).
type testEnv map[string]string

var interpolation = regexp.MustCompile(`\$\{(\w+)(?::?[?-][^}]*)?\}`)

func newTestEnv(t *testing.T) testEnv {
	t.Helper()
	issuer, err := nkeys.CreateAccount()
	if err != nil {
		t.Fatal(err)
	}
	pub, _ := issuer.PublicKey()
	env := testEnv{natsauth.IssuerVar: pub, "REDIS_PASSWORD": "redis-test-password",
		"GRAFANA_ADMIN_PASSWORD": "grafana-test-password"}
	for _, role := range natsauth.Roles {
		env[natsauth.PasswordVar(role)] = role + "-test-password"
	}
	return env
}

// resolve interpolates v as Compose would with env set.
func (e testEnv) resolve(t *testing.T, v string) string {
	t.Helper()
	return interpolation.ReplaceAllStringFunc(v, func(ref string) string {
		name := interpolation.FindStringSubmatch(ref)[1]
		val, ok := e[name]
		if !ok {
			t.Errorf("compose.yaml interpolates ${%s}, which no deployment step sets", name)
		}
		return val
	})
}

// serviceRole is the NATS user each inferq binary connects as.
var serviceRole = map[string]string{"ingress": natsauth.RoleIngress, "batcher": natsauth.RoleBatcher,
	"resultsvc": natsauth.RoleResultSvc, "inferq-worker": natsauth.RoleWorker}

// TestComposeNATSAuth: nats.conf carries natsauth's users and permissions
// and the auth callout, verbatim; loaded into a real nats-server it refuses
// an anonymous client and admits each service with the credentials its
// container gets from the environment.
func TestComposeNATSAuth(t *testing.T) {
	_, cf := readCompose(t)
	cfg := loadConfig(t)
	b, err := os.ReadFile("nats.conf")
	if err != nil {
		t.Fatal(err)
	}
	svccheck.CheckAuthBlock(t, "nats.conf", string(b), cfg.NATS.Prefix, "")

	env := newTestEnv(t)
	for k, v := range cf.Services["nats-1"].Environment {
		t.Setenv(k, env.resolve(t, v))
	}
	srv := svccheck.RunNATSConf(t, "nats.conf", cfg.NATS.Prefix)
	users := 0
	for name, s := range cf.Services {
		bin, ok := s.inferq()
		if !ok {
			continue
		}
		role := serviceRole[bin]
		if got := s.Environment["INFERQ_NATS_USER"]; got != role {
			t.Errorf("service %s: INFERQ_NATS_USER %q, want %q", name, got, role)
			continue
		}
		pw := env.resolve(t, s.Environment["INFERQ_NATS_PASSWORD"])
		if pw != env[natsauth.PasswordVar(role)] {
			t.Errorf("service %s: INFERQ_NATS_PASSWORD is not ${%s}", name, natsauth.PasswordVar(role))
			continue
		}
		svccheck.ConnectAs(t, srv, role, pw)
		users++
	}
	if users == 0 {
		t.Error("no inferq service connects to NATS")
	}
	svccheck.RefusesAnonymous(t, srv)
	if got := cf.Services["ingress"].StopGracePeriod; got != "70s" {
		t.Errorf("ingress: stop_grace_period %q, want 70s (its drain is 65s by default)", got)
	}
}

// TestComposeLockedDown: the host sees the API and Grafana only; Grafana
// has no anonymous access and no default admin password; Prometheus cannot
// be reloaded or stopped over HTTP; Redis requires the password every
// service and the exporter get.
func TestComposeLockedDown(t *testing.T) {
	_, cf := readCompose(t)
	published := map[string]bool{}
	for name, s := range cf.Services {
		if len(s.Ports) > 0 {
			published[name] = true
		}
	}
	if want := map[string]bool{"lb": true, "grafana": true}; !maps.Equal(published, want) {
		t.Errorf("services publishing host ports: %v, want only lb (the API) and grafana", slices.Sorted(maps.Keys(published)))
	}
	required := func(v string) bool { return regexp.MustCompile(`^\$\{\w+:\?[^}]+\}$`).MatchString(v) }
	g := cf.Services["grafana"]
	if g.Environment["GF_AUTH_ANONYMOUS_ENABLED"] != "false" {
		t.Errorf("grafana: GF_AUTH_ANONYMOUS_ENABLED %q, want \"false\"", g.Environment["GF_AUTH_ANONYMOUS_ENABLED"])
	}
	if !required(g.Environment["GF_SECURITY_ADMIN_PASSWORD"]) {
		t.Errorf("grafana: GF_SECURITY_ADMIN_PASSWORD %q: want ${VAR:?...}, set by the operator", g.Environment["GF_SECURITY_ADMIN_PASSWORD"])
	}
	for _, arg := range cf.Services["prometheus"].Command {
		if strings.Contains(arg, "enable-lifecycle") || strings.Contains(arg, "enable-admin-api") {
			t.Errorf("prometheus: %s lets anyone on the network reload or stop it", arg)
		}
	}
	env := newTestEnv(t)
	pw := env["REDIS_PASSWORD"]
	r := cf.Services["redis"]
	if !required(r.Environment["REDIS_PASSWORD"]) || !strings.Contains(strings.Join(r.Command, " "), "--requirepass") {
		t.Errorf("redis: want --requirepass with REDIS_PASSWORD from the environment, got %q", r.Command)
	}
	if env.resolve(t, cf.Services["redis-exporter"].Environment["REDIS_PASSWORD"]) != pw {
		t.Error("redis-exporter: REDIS_PASSWORD is not Redis's password")
	}
	for name, s := range cf.Services {
		if s.Build == nil {
			continue
		}
		u, err := url.Parse(env.resolve(t, s.Environment["INFERQ_REDIS_URL"]))
		if err != nil || u.User == nil {
			t.Errorf("service %s: INFERQ_REDIS_URL %q carries no password", name, s.Environment["INFERQ_REDIS_URL"])
			continue
		}
		if got, _ := u.User.Password(); got != pw {
			t.Errorf("service %s: Redis password %q, want REDIS_PASSWORD", name, got)
		}
	}
}
