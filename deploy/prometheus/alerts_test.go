// Package prometheus holds the Prometheus configuration of the deployments;
// its test checks the alert rules the way Prometheus would load them, and
// that each rule selects only metrics that exist or are listed as proposed.
package prometheus

import (
	"bytes"
	"errors"
	"io"
	"os"
	"regexp"
	"slices"
	"strings"
	"testing"
	"text/template"

	"github.com/prometheus/common/model"
	"gopkg.in/yaml.v3"

	"github.com/inferq/inferq/deploy/internal/promcheck"
	"github.com/inferq/inferq/pkg/jetstream"
)

// ruleFile is Prometheus's rule file format, limited to alerting rules: an
// unknown or misspelt key fails the decode.
type ruleFile struct {
	Groups []struct {
		Name     string `yaml:"name"`
		Interval string `yaml:"interval"`
		Rules    []rule `yaml:"rules"`
	} `yaml:"groups"`
}

type rule struct {
	Alert         string            `yaml:"alert"`
	Expr          string            `yaml:"expr"`
	For           string            `yaml:"for"`
	KeepFiringFor string            `yaml:"keep_firing_for"`
	Labels        map[string]string `yaml:"labels"`
	Annotations   map[string]string `yaml:"annotations"`
}

func loadRules(t *testing.T) ruleFile {
	t.Helper()
	b, err := os.ReadFile("alerts.yml")
	if err != nil {
		t.Fatal(err)
	}
	var rf ruleFile
	dec := yaml.NewDecoder(bytes.NewReader(b))
	dec.KnownFields(true)
	if err := dec.Decode(&rf); err != nil {
		t.Fatalf("alerts.yml: %v", err)
	}
	if err := dec.Decode(new(any)); !errors.Is(err, io.EOF) {
		t.Fatalf("alerts.yml: want one YAML document")
	}
	if len(rf.Groups) == 0 {
		t.Fatal("alerts.yml: no rule groups")
	}
	return rf
}

var (
	alertName  = regexp.MustCompile(`^[A-Z][A-Za-z0-9]+$`)
	labelRef   = regexp.MustCompile(`\$labels\.([a-zA-Z_][a-zA-Z0-9_]*)`)
	severities = []string{"critical", "warning", "info"}
)

// templateFuncs stands in for the functions Prometheus offers alert
// templates, so annotations are parsed and executed as Prometheus would.
var templateFuncs = template.FuncMap{
	"humanize":           func(any) string { return "1" },
	"humanize1024":       func(any) string { return "1" },
	"humanizeDuration":   func(any) string { return "1s" },
	"humanizePercentage": func(any) string { return "1%" },
	"humanizeTimestamp":  func(any) string { return "t" },
	"toUpper":            strings.ToUpper,
	"toLower":            strings.ToLower,
	"title":              strings.ToTitle,
	"reReplaceAll":       func(_, _, s string) string { return s },
	"match":              func(_, _ string) bool { return true },
	"externalURL":        func() string { return "http://prometheus" },
}

// runbookBase is where the alerts' runbook_url annotations point: the
// runbook on the project's default branch, one section per alert.
const runbookBase = "https://github.com/inferq/inferq/blob/main/docs/runbook.md"

func TestAlertRules(t *testing.T) {
	rf := loadRules(t)
	seenGroup, seenAlert := map[string]bool{}, map[string]bool{}
	for _, g := range rf.Groups {
		if g.Name == "" || seenGroup[g.Name] {
			t.Errorf("group %q: name empty or repeated", g.Name)
		}
		seenGroup[g.Name] = true
		if g.Interval != "" {
			if _, err := model.ParseDuration(g.Interval); err != nil {
				t.Errorf("group %s: interval: %v", g.Name, err)
			}
		}
		if len(g.Rules) == 0 {
			t.Errorf("group %s: no rules", g.Name)
		}
		for _, r := range g.Rules {
			if !alertName.MatchString(r.Alert) || seenAlert[r.Alert] {
				t.Errorf("group %s: alert %q: want a unique CamelCase name", g.Name, r.Alert)
			}
			seenAlert[r.Alert] = true
			checkRule(t, r)
		}
	}
	checkRunbook(t, seenAlert)
}

// checkRunbook: docs/runbook.md has a section "## <Alert>" for every alert
// (its anchor is what runbook_url links) and none for an alert that is gone.
func checkRunbook(t *testing.T, alerts map[string]bool) {
	t.Helper()
	b, err := os.ReadFile("../../docs/runbook.md")
	if err != nil {
		t.Fatal(err)
	}
	sections := map[string]bool{}
	for line := range strings.SplitSeq(string(b), "\n") {
		if name, ok := strings.CutPrefix(line, "## "); ok && alertName.MatchString(name) && strings.HasPrefix(name, "Inferq") {
			sections[name] = true
		}
	}
	for a := range alerts {
		if !sections[a] {
			t.Errorf("docs/runbook.md has no section \"## %s\"", a)
		}
	}
	for s := range sections {
		if !alerts[s] {
			t.Errorf("docs/runbook.md: section %q names no alert of alerts.yml", s)
		}
	}
}

func checkRule(t *testing.T, r rule) {
	t.Helper()
	if _, err := promcheck.Selectors(r.Expr); err != nil {
		t.Errorf("%s: expr: %v", r.Alert, err)
	}
	if r.For == "" {
		t.Errorf("%s: no `for`: one bad scrape would page", r.Alert)
	} else if _, err := model.ParseDuration(r.For); err != nil {
		t.Errorf("%s: for: %v", r.Alert, err)
	}
	if r.KeepFiringFor != "" {
		if _, err := model.ParseDuration(r.KeepFiringFor); err != nil {
			t.Errorf("%s: keep_firing_for: %v", r.Alert, err)
		}
	}
	if !slices.Contains(severities, r.Labels["severity"]) {
		t.Errorf("%s: labels.severity %q: want one of %v", r.Alert, r.Labels["severity"], severities)
	}
	if want := runbookBase + "#" + strings.ToLower(r.Alert); r.Annotations["runbook_url"] != want {
		t.Errorf("%s: annotations.runbook_url %q, want %q", r.Alert, r.Annotations["runbook_url"], want)
	}
	if strings.TrimSpace(r.Annotations["summary"]) == "" {
		t.Errorf("%s: annotations.summary is empty", r.Alert)
	}
	for k, text := range r.Annotations {
		if k != "summary" && k != "description" && k != "runbook_url" {
			t.Errorf("%s: annotation %q: want summary, description or runbook_url", r.Alert, k)
		}
		checkTemplate(t, r, k, text)
	}
}

// checkTemplate parses and runs an annotation as Prometheus does, and checks
// that every $labels.X it prints can exist on the alert: X is a target label
// (job, instance) or appears in the expression.
func checkTemplate(t *testing.T, r rule, key, text string) {
	t.Helper()
	const defs = "{{$labels := .Labels}}{{$externalLabels := .ExternalLabels}}{{$value := .Value}}"
	tmpl, err := template.New(key).Funcs(templateFuncs).Option("missingkey=zero").Parse(defs + text)
	if err != nil {
		t.Errorf("%s: annotation %s: %v", r.Alert, key, err)
		return
	}
	data := map[string]any{"Labels": map[string]string{}, "ExternalLabels": map[string]string{}, "Value": 1.0}
	if err := tmpl.Execute(io.Discard, data); err != nil {
		t.Errorf("%s: annotation %s: %v", r.Alert, key, err)
	}
	for _, m := range labelRef.FindAllStringSubmatch(text, -1) {
		if l := m[1]; l != "job" && l != "instance" && !strings.Contains(r.Expr, l) {
			t.Errorf("%s: annotation %s prints $labels.%s, which the expression never has", r.Alert, key, l)
		}
	}
}

// TestAlertMetricsExist: every series an alert selects is documented,
// exported by a listed exporter, or proposed; stream names are inferq's; and
// each alert the deployment promises is there.
func TestAlertMetricsExist(t *testing.T) {
	cat, err := promcheck.LoadCatalog("../..")
	if err != nil {
		t.Fatal(err)
	}
	for name := range cat.Proposed {
		if cat.Documented[name] {
			t.Errorf("%s is in docs/metrics.md now: remove it from the proposed table in README.md", name)
		}
	}
	topo := jetstream.DefaultTopology()
	streams := []string{topo.JobsStream(), topo.BatchesStream(), topo.EventsStream(), topo.TokensStream(), topo.DeadStream()}
	used := map[string]bool{}
	for _, g := range loadRules(t).Groups {
		for _, r := range g.Rules {
			sels, err := promcheck.Selectors(r.Expr)
			if err != nil {
				continue // reported by TestAlertRules
			}
			for _, s := range sels {
				used[s.Name] = true
				if !cat.Documented[s.Name] && !cat.Proposed[s.Name] && !cat.External[s.Name] {
					t.Errorf("%s: metric %q is not in docs/metrics.md nor in deploy/prometheus/README.md", r.Alert, s.Name)
				}
				if v, ok := s.Equals["stream_name"]; ok && !slices.Contains(streams, v) {
					t.Errorf("%s: stream_name %q is not one of inferq's streams %v", r.Alert, v, streams)
				}
			}
		}
	}
	for name := range cat.Proposed {
		if !used[name] {
			t.Errorf("proposed metric %s is used by no alert: drop it from README.md", name)
		}
	}
	// What each alert of the deployment's contract reads.
	for _, want := range []struct{ alert, metric string }{
		{"oldest queued job age", "inferq_queue_oldest_job_age_seconds"},
		{"dead-letter growth", "inferq_dead_letters_total"},
		{"no live workers with pending batches", "inferq_workers_live"},
		{"no live workers with pending batches", "jetstream_consumer_num_pending"},
		{"Redis unreachable", "redis_up"},
		{"NATS unreachable", "jetstream_server_total_streams"},
		{"Redis and NATS unreachable from inferq", "inferq_dependency_up"},
	} {
		if !used[want.metric] {
			t.Errorf("no alert for %s reads %s", want.alert, want.metric)
		}
	}
}
