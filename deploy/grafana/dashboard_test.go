// Package grafana holds the Grafana provisioning of the compose deployment;
// its test checks that the dashboards decode, query the provisioned
// Prometheus, and plot only metrics that exist.
package grafana

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"

	"github.com/prometheus/prometheus/model/labels"
	"github.com/prometheus/prometheus/promql/parser"
	"gopkg.in/yaml.v3"

	"github.com/inferq/inferq/deploy/internal/promcheck"
	"github.com/inferq/inferq/pkg/jetstream"
)

// dashboard is the part of Grafana's dashboard JSON model these files use;
// an unknown key fails the decode, so a misspelt one cannot be ignored.
type dashboard struct {
	UID           string   `json:"uid"`
	Title         string   `json:"title"`
	Description   string   `json:"description"`
	Tags          []string `json:"tags"`
	Timezone      string   `json:"timezone"`
	Editable      bool     `json:"editable"`
	GraphTooltip  int      `json:"graphTooltip"`
	Refresh       string   `json:"refresh"`
	SchemaVersion int      `json:"schemaVersion"`
	Version       int      `json:"version"`
	Time          struct{ From, To string }
	Templating    struct{ List []variable }
	Annotations   json.RawMessage `json:"annotations"`
	Links         json.RawMessage `json:"links"`
	Panels        []panel         `json:"panels"`
}

type datasourceRef struct {
	Type string `json:"type"`
	UID  string `json:"uid"`
}

type variable struct {
	Name        string          `json:"name"`
	Label       string          `json:"label"`
	Type        string          `json:"type"`
	Datasource  datasourceRef   `json:"datasource"`
	Query       json.RawMessage `json:"query"`
	Definition  string          `json:"definition"`
	Refresh     int             `json:"refresh"`
	Multi       bool            `json:"multi"`
	IncludeAll  bool            `json:"includeAll"`
	AllValue    string          `json:"allValue"`
	Current     json.RawMessage `json:"current"`
	Sort        int             `json:"sort"`
	Description string          `json:"description"`
}

type panel struct {
	ID          int           `json:"id"`
	Type        string        `json:"type"`
	Title       string        `json:"title"`
	Description string        `json:"description"`
	Datasource  datasourceRef `json:"datasource"`
	GridPos     struct{ H, W, X, Y int }
	FieldConfig json.RawMessage `json:"fieldConfig"`
	Options     json.RawMessage `json:"options"`
	Targets     []struct {
		Datasource   datasourceRef `json:"datasource"`
		RefID        string        `json:"refId"`
		Expr         string        `json:"expr"`
		LegendFormat string        `json:"legendFormat"`
	} `json:"targets"`
}

// provisioning is Grafana's provisioning file format for data sources and
// dashboard providers.
type provisioning struct {
	APIVersion  int `yaml:"apiVersion"`
	Datasources []struct {
		Name      string         `yaml:"name"`
		UID       string         `yaml:"uid"`
		Type      string         `yaml:"type"`
		Access    string         `yaml:"access"`
		URL       string         `yaml:"url"`
		IsDefault bool           `yaml:"isDefault"`
		Editable  bool           `yaml:"editable"`
		JSONData  map[string]any `yaml:"jsonData"`
	} `yaml:"datasources"`
	Providers []struct {
		Name                  string `yaml:"name"`
		Folder                string `yaml:"folder"`
		Type                  string `yaml:"type"`
		DisableDeletion       bool   `yaml:"disableDeletion"`
		AllowUIUpdates        bool   `yaml:"allowUiUpdates"`
		UpdateIntervalSeconds int    `yaml:"updateIntervalSeconds"`
		Options               struct {
			Path                      string `yaml:"path"`
			FoldersFromFilesStructure bool   `yaml:"foldersFromFilesStructure"`
		} `yaml:"options"`
	} `yaml:"providers"`
}

func decodeStrictJSON(path string, v any) error {
	b, err := os.ReadFile(path)
	if err != nil {
		return err
	}
	dec := json.NewDecoder(bytes.NewReader(b))
	dec.DisallowUnknownFields()
	if err := dec.Decode(v); err != nil {
		return fmt.Errorf("%s: %w", path, err)
	}
	if _, err := dec.Token(); !errors.Is(err, io.EOF) {
		return fmt.Errorf("%s: data after the dashboard", path)
	}
	return nil
}

func decodeStrictYAML(path string, v any) error {
	b, err := os.ReadFile(path)
	if err != nil {
		return err
	}
	dec := yaml.NewDecoder(bytes.NewReader(b))
	dec.KnownFields(true)
	if err := dec.Decode(v); err != nil {
		return fmt.Errorf("%s: %w", path, err)
	}
	return nil
}

// prometheusUID is the uid of the provisioned Prometheus data source.
func prometheusUID(t *testing.T) string {
	t.Helper()
	var p provisioning
	if err := decodeStrictYAML("provisioning/datasources/datasources.yaml", &p); err != nil {
		t.Fatal(err)
	}
	if p.APIVersion != 1 {
		t.Errorf("datasources.yaml: apiVersion %d, want 1", p.APIVersion)
	}
	uid := ""
	for _, ds := range p.Datasources {
		if ds.Name == "" || ds.UID == "" || ds.URL == "" {
			t.Errorf("datasources.yaml: data source %+v needs a name, uid and url", ds)
		}
		if ds.Type == "prometheus" {
			uid = ds.UID
		}
	}
	if uid == "" {
		t.Fatal("datasources.yaml: no Prometheus data source")
	}
	return uid
}

func TestDashboardProvider(t *testing.T) {
	var p provisioning
	if err := decodeStrictYAML("provisioning/dashboards/dashboards.yaml", &p); err != nil {
		t.Fatal(err)
	}
	if p.APIVersion != 1 || len(p.Providers) == 0 {
		t.Fatalf("dashboards.yaml: want apiVersion 1 and a provider")
	}
	for _, pr := range p.Providers {
		if pr.Type != "file" || !filepath.IsAbs(pr.Options.Path) {
			t.Errorf("provider %s: want type file and an absolute options.path", pr.Name)
		}
	}
}

// grafanaVars are replaced by plausible values so the queries parse as PromQL.
var grafanaVars = strings.NewReplacer(
	"$__rate_interval", "1m", "$__interval", "1m", "$__range", "1h", "${model}", ".+", "$model", ".+")

var refID = regexp.MustCompile(`^[A-Z]$`)

func TestDashboards(t *testing.T) {
	uid := prometheusUID(t)
	cat, err := promcheck.LoadCatalog("../..")
	if err != nil {
		t.Fatal(err)
	}
	topo := jetstream.DefaultTopology()
	streams := []string{topo.JobsStream(), topo.BatchesStream(), topo.EventsStream(), topo.TokensStream(), topo.DeadStream()}
	files, _ := filepath.Glob("dashboards/*.json")
	if len(files) == 0 {
		t.Fatal("no dashboards")
	}
	for _, f := range files {
		var d dashboard
		if err := decodeStrictJSON(f, &d); err != nil {
			t.Error(err)
			continue
		}
		if d.UID == "" || d.Title == "" || d.SchemaVersion < 36 {
			t.Errorf("%s: want a uid, a title and schemaVersion >= 36", f)
		}
		for _, v := range d.Templating.List {
			if v.Datasource.UID != uid {
				t.Errorf("%s: variable %s: data source %q, want %q", f, v.Name, v.Datasource.UID, uid)
			}
		}
		used := map[string]bool{}
		ids := map[int]bool{}
		for _, p := range d.Panels {
			where := fmt.Sprintf("%s: panel %d %q", f, p.ID, p.Title)
			if p.ID <= 0 || ids[p.ID] {
				t.Errorf("%s: id missing or repeated", where)
			}
			ids[p.ID] = true
			if p.GridPos.W <= 0 || p.GridPos.H <= 0 || p.GridPos.X+p.GridPos.W > 24 {
				t.Errorf("%s: gridPos %+v does not fit the 24-column grid", where, p.GridPos)
			}
			if p.Datasource.UID != uid || len(p.Targets) == 0 {
				t.Errorf("%s: want data source %q and at least one query", where, uid)
			}
			refs := map[string]bool{}
			for _, q := range p.Targets {
				if !refID.MatchString(q.RefID) || refs[q.RefID] || q.Datasource.UID != uid {
					t.Errorf("%s: query %q: refId missing or repeated, or data source not %q", where, q.RefID, uid)
				}
				refs[q.RefID] = true
				sels, err := promcheck.Selectors(grafanaVars.Replace(q.Expr))
				if err != nil {
					t.Errorf("%s: query %s: %v", where, q.RefID, err)
					continue
				}
				for _, s := range sels {
					used[s.Name] = true
					// Dashboards show what exists today: no proposed metrics.
					if !cat.Documented[s.Name] && !cat.External[s.Name] {
						t.Errorf("%s: metric %q is neither in docs/metrics.md nor an exporter's", where, s.Name)
					}
					if v, ok := s.Equals["stream_name"]; ok && !slices.Contains(streams, v) {
						t.Errorf("%s: stream_name %q is not one of inferq's streams", where, v)
					}
				}
			}
		}
		// The views the deployment promises.
		for topic, metric := range map[string]string{
			"queue depth":  "jetstream_consumer_num_pending",
			"batch sizes":  "inferq_batch_size_bucket",
			"latency":      "inferq_job_duration_seconds_bucket",
			"tokens/s":     "inferq_tokens_published_total",
			"dead letters": "inferq_dead_letters_total",
			"failed jobs":  "inferq_jobs_finished_total",
			"oldest job":   "inferq_queue_oldest_job_age_seconds",
			"live workers": "inferq_workers_live",
			"dependencies": "inferq_dependency_up",
		} {
			if !used[metric] {
				t.Errorf("%s: no panel shows %s (%s)", f, topic, metric)
			}
		}
	}
}

// TestDashboardOneModel: with one model picked (not "All"), every consumer
// regex still selects that model's real consumers and no other model's. The
// queue panel once matched batcher-<model> while the consumers are
// batcher-<model>-p0..p2, so it stayed empty unless "All" was picked.
func TestDashboardOneModel(t *testing.T) {
	files, _ := filepath.Glob("dashboards/*.json")
	consumers := func(model string) []string {
		return append(jetstream.BatcherConsumers(model), jetstream.WorkerConsumer(model))
	}
	p := parser.NewParser(parser.Options{})
	for _, f := range files {
		var d dashboard
		if err := decodeStrictJSON(f, &d); err != nil {
			t.Fatal(err)
		}
		for _, pn := range d.Panels {
			for _, q := range pn.Targets {
				one := strings.NewReplacer("$__rate_interval", "1m", "$model", "simple").Replace(q.Expr)
				expr, err := p.ParseExpr(one)
				if err != nil {
					t.Errorf("panel %q: %v", pn.Title, err)
					continue
				}
				parser.Inspect(expr, func(n parser.Node, _ []parser.Node) error {
					vs, ok := n.(*parser.VectorSelector)
					if !ok {
						return nil
					}
					for _, m := range vs.LabelMatchers {
						if m.Name != "consumer_name" || m.Type != labels.MatchRegexp {
							continue
						}
						if !slices.ContainsFunc(consumers("simple"), m.Matches) {
							t.Errorf("panel %q: %s matches none of model simple's consumers %v", pn.Title, m, consumers("simple"))
						}
						if slices.ContainsFunc(consumers("simple-2"), m.Matches) {
							t.Errorf("panel %q: %s matches model simple-2's consumers too", pn.Title, m)
						}
					}
					return nil
				})
			}
		}
	}
}

// TestHTTPLatencyLeavesOutWaitingRoutes: long polls and streams last as
// long as the job, so a latency panel that mixes them in shows nothing.
func TestHTTPLatencyLeavesOutWaitingRoutes(t *testing.T) {
	var d dashboard
	if err := decodeStrictJSON("dashboards/inferq.json", &d); err != nil {
		t.Fatal(err)
	}
	waiting := []string{"/v1/jobs/:id", "/v1/jobs/:id/events", "/v2/models/:model/generate_stream",
		"/v2/models/:model/versions/:version/infer", "/v2/models/:model/generate"}
	fast := []string{"/v1/models/:model/jobs", "/v1/models", "/v2/models/:model/ready"}
	p := parser.NewParser(parser.Options{})
	found := false
	for _, pn := range d.Panels {
		for _, q := range pn.Targets {
			expr, err := p.ParseExpr(grafanaVars.Replace(q.Expr))
			if err != nil {
				continue
			}
			parser.Inspect(expr, func(n parser.Node, _ []parser.Node) error {
				vs, ok := n.(*parser.VectorSelector)
				if !ok || vs.Name != "inferq_http_request_duration_seconds_bucket" {
					return nil
				}
				found = true
				ls := func(route string) labels.Labels { return labels.FromStrings("route", route) }
				for _, r := range waiting {
					if matchesAll(vs.LabelMatchers, ls(r)) {
						t.Errorf("panel %q plots the waiting route %s", pn.Title, r)
					}
				}
				for _, r := range fast {
					if !matchesAll(vs.LabelMatchers, ls(r)) {
						t.Errorf("panel %q leaves out route %s", pn.Title, r)
					}
				}
				return nil
			})
		}
	}
	if !found {
		t.Error("no panel plots inferq_http_request_duration_seconds_bucket")
	}
}

func matchesAll(ms []*labels.Matcher, ls labels.Labels) bool {
	for _, m := range ms {
		if m.Name != "route" {
			continue
		}
		if !m.Matches(ls.Get(m.Name)) {
			return false
		}
	}
	return true
}
