package e2e

import (
	"encoding/json"
	"net/http"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/inferq/inferq/internal/config"
	"github.com/inferq/inferq/internal/testutil"
)

// The read paths follow the live registry: a model registered over the API
// shows within seconds in GET /v1/models (with its versions), in the /v2
// metadata, ready and config routes, in the OpenAI model list and in the
// gauges; a retired version and a deleted model leave them.
func TestRegistryReadPaths(t *testing.T) {
	s := startStack(t, false, func(c *config.Config) { c.Registry = true })
	call := bearerCaller(t, s.URL)
	must := func(method, path, body string, want int) string {
		t.Helper()
		code, _, b := call(method, path, "", body)
		if code != want {
			t.Fatalf("%s %s: %d %s, want %d", method, path, code, b, want)
		}
		return b
	}
	type model struct {
		Name, Version string
		Versions      []struct {
			Version  string `json:"version"`
			Served   string `json:"served_name"`
			Default  bool   `json:"default"`
			Draining bool   `json:"draining"`
			Weight   int    `json:"weight"`
		} `json:"versions"`
	}
	list := func() map[string]model {
		var v struct{ Models []model }
		if err := json.Unmarshal([]byte(must("GET", "/v1/models", "", 200)), &v); err != nil {
			t.Fatal(err)
		}
		out := map[string]model{}
		for _, m := range v.Models {
			out[m.Name] = m
		}
		return out
	}
	openaiIDs := func() []string {
		var v struct{ Data []struct{ ID string } }
		if err := json.Unmarshal([]byte(must("GET", "/openai/v1/models", "", 200)), &v); err != nil {
			t.Fatal(err)
		}
		var ids []string
		for _, m := range v.Data {
			ids = append(ids, m.ID)
		}
		return ids
	}
	if m, ok := list()["simple"]; !ok || len(m.Versions) != 1 || m.Versions[0].Served != "simple" || !m.Versions[0].Default {
		t.Fatalf("the bootstrapped simple: %+v", m)
	}

	start := time.Now()
	must("PUT", "/v1/models/gen2", `{"name":"gen2","runner":{"builtin":"repeat"}}`, 200)
	must("PUT", "/v1/models/gen2/versions/2", `{"name":"gen2","runner":{"builtin":"repeat"},"batching":{"max_batch_size":4}}`, 200)
	must("PUT", "/v1/models/gen2", `{"split":{"1":90,"2":10}}`, 200)
	testutil.Eventually(t, 5*time.Second, func() bool {
		m, ok := list()["gen2"]
		return ok && len(m.Versions) == 2 && m.Versions[1].Weight == 10
	}, "gen2 and its two versions never showed in GET /v1/models")
	t.Logf("registered model listed %v after its PUT", time.Since(start).Round(time.Millisecond))
	var one model
	if err := json.Unmarshal([]byte(must("GET", "/v1/models/gen2", "", 200)), &one); err != nil {
		t.Fatal(err)
	}
	if one.Name != "gen2" || one.Version != "1" || !one.Versions[0].Default || one.Versions[1].Served != "gen2@2" || one.Versions[1].Default {
		t.Errorf("GET /v1/models/gen2: %+v", one)
	}
	var meta struct {
		Name     string
		Versions []string
	}
	if err := json.Unmarshal([]byte(must("GET", "/v2/models/gen2", "", 200)), &meta); err != nil {
		t.Fatal(err)
	}
	if meta.Name != "gen2" || !slices.Equal(meta.Versions, []string{"1", "2"}) {
		t.Errorf("/v2/models/gen2: %+v", meta)
	}
	if b := must("GET", "/v2/models/gen2/versions/2/config", "", 200); !strings.Contains(b, `"max_batch_size":4`) || !strings.Contains(b, `"name":"gen2"`) {
		t.Errorf("/v2/models/gen2/versions/2/config: %s", b)
	}
	testutil.Eventually(t, 15*time.Second, func() bool {
		code, _, _ := call("GET", "/v2/models/gen2/versions/2/ready", "", "")
		return code == 200
	}, "gen2 version 2 never ready")
	if ids := openaiIDs(); !slices.Contains(ids, "gen2") || !slices.Contains(ids, "gen2@1") || !slices.Contains(ids, "gen2@2") {
		t.Errorf("/openai/v1/models: %v", ids)
	}
	if b := must("GET", "/metrics", "", 200); !strings.Contains(b, `inferq_workers_live{model="gen2@2"}`) {
		t.Errorf("/metrics has no gauge of gen2@2")
	}
	// The console's model filter follows the registry too.
	if b := must("GET", "/ui/jobs", "", 200); !strings.Contains(b, "<option>gen2</option>") || !strings.Contains(b, "<option>gen2@2</option>") {
		t.Errorf("the console's model filter lacks gen2 and gen2@2")
	}
	if code, _, _ := call("GET", "/ui/jobs?model=gen2@2", "", ""); code != http.StatusOK {
		t.Errorf("console jobs of gen2@2: %d", code)
	}

	// A retired version leaves the paths that take jobs; it is listed as draining until it goes.
	must("PUT", "/v1/models/gen2", `{"split":null}`, 200)
	must("DELETE", "/v1/models/gen2/versions/2", "", 202)
	testutil.Eventually(t, 5*time.Second, func() bool {
		code, _, _ := call("GET", "/v2/models/gen2/versions/2", "", "")
		return code == 404 && !slices.Contains(openaiIDs(), "gen2@2")
	}, "a retired version still shows as serving")
	if m := list()["gen2"]; len(m.Versions) == 2 && !m.Versions[1].Draining {
		t.Errorf("retired version 2 listed as %+v", m.Versions[1])
	}
	must("DELETE", "/v1/models/gen2", "", 202)
	testutil.Eventually(t, 5*time.Second, func() bool {
		code, _, _ := call("GET", "/v1/models/gen2", "", "")
		_, listed := list()["gen2"]
		return code == 404 && !listed && !slices.Contains(openaiIDs(), "gen2")
	}, "a deleted model is still listed")
	if code, _, _ := call("GET", "/v2/models/gen2", "", ""); code != http.StatusNotFound {
		t.Errorf("/v2/models/gen2 after delete: %d", code)
	}
	if b := must("GET", "/ui/jobs", "", 200); strings.Contains(b, "<option>gen2</option>") {
		t.Errorf("the console's model filter still lists the deleted gen2")
	}
}
