package ingress

import (
	"net/http"
	"strconv"

	"github.com/inferq/inferq/internal/config"
)

// The read paths (GET /v1/models, /v2 metadata, ready and config, the
// OpenAI model list, the gauges and the console) show what the ingress
// serves: the live registry's snapshot when one is used, else the config
// file's models.

// listedModel is a model as the read paths show it: the config of the
// version its jobs get by default, and with the registry on its versions.
type listedModel struct {
	m        *config.Model   // the default version's config (its Name is the served name)
	versions []VersionInfo   // nil when the registry is off
	live     []*config.Model // the versions that take jobs, for /v2 and the OpenAI list
}

// VersionInfo is one version of a model in GET /v1/models when the live
// registry is on.
type VersionInfo struct {
	Version string `json:"version"`
	// Served is the name its queues, metrics and jobs' model field carry:
	// the model's own for version "1", <model>@<version> for another.
	Served  string `json:"served_name"`
	Default bool   `json:"default,omitempty"`
	// Weight is its share of the model's split (0 when none is set).
	Weight int `json:"weight,omitempty"`
	// Draining: retired, it takes no new jobs and goes once its queues are empty.
	Draining bool   `json:"draining,omitempty"`
	Workers  int    `json:"workers"`
	Stats    *Stats `json:"stats"`
}

// listedModels lists every model, in the config file's order or, with the
// registry, the bucket's key order; a model being deleted is left out.
func (i *Ingress) listedModels() []listedModel {
	if i.opt.Catalog == nil {
		out := make([]listedModel, 0, len(i.opt.Config.Models))
		for k := range i.opt.Config.Models {
			m := &i.opt.Config.Models[k]
			out = append(out, listedModel{m: m, live: []*config.Model{m}})
		}
		return out
	}
	snap := i.opt.Catalog.Snapshot()
	var out []listedModel
	at := map[string]int{}
	for _, served := range snap.Served() {
		name := modelOf(served.Name)
		e, ok := snap.Entry(name)
		if !ok || e.Deleted {
			continue
		}
		k, seen := at[name]
		if !seen {
			k = len(out)
			at[name] = k
			out = append(out, listedModel{})
		}
		m, _ := snap.Lookup(served.Name) // the snapshot's own copy, as Resolve hands out
		_, retired := e.Retired[m.Version]
		l := &out[k]
		l.versions = append(l.versions, VersionInfo{Version: m.Version, Served: m.Name, Default: m.Version == e.Default,
			Weight: e.Split[m.Version], Draining: retired})
		if !retired {
			l.live = append(l.live, m)
		}
		if m.Version == e.Default {
			l.m = m
		}
	}
	kept := out[:0]
	for _, l := range out {
		if l.m != nil { // a default that has no config cannot serve: not listed
			kept = append(kept, l)
		}
	}
	return kept
}

// findModel is the config the read paths show for a model and optional
// version: the named version, else the default one (not a split's pick).
func (i *Ingress) findModel(name, version string) (*config.Model, error) {
	if i.opt.Catalog == nil {
		m, ok := i.opt.Config.Model(name)
		if !ok {
			return nil, apiError(http.StatusNotFound, "not_found", "model "+strconv.Quote(name)+" not found")
		}
		if version != "" && version != m.Version {
			return nil, apiError(http.StatusNotFound, "not_found", "model "+strconv.Quote(name)+" has no version "+strconv.Quote(version))
		}
		return m, nil
	}
	snap := i.opt.Catalog.Snapshot()
	if version == "" {
		e, ok := snap.Entry(name)
		if !ok || e.Deleted {
			return nil, apiError(http.StatusNotFound, "not_found", "model "+strconv.Quote(name)+" not found")
		}
		version = e.Default
	}
	m, err := snap.Resolve(name, version, "")
	if err != nil {
		return nil, apiError(http.StatusNotFound, "not_found", err.Error())
	}
	return m, nil
}

// liveVersions are the versions of a model that take jobs (its config's
// only one when the registry is off).
func (i *Ingress) liveVersions(name string) []string {
	for _, l := range i.listedModels() {
		if modelOf(l.m.Name) == name {
			out := make([]string, len(l.live))
			for k, m := range l.live {
				out[k] = m.Version
			}
			return out
		}
	}
	return nil
}

// servedModels are the model versions batchers and workers run, by served
// name (draining ones too): what the gauges and the console report.
func (i *Ingress) servedModels() []config.Model {
	if i.opt.Catalog == nil {
		return i.opt.Config.Models
	}
	return i.opt.Catalog.Snapshot().Served()
}

// servedModel finds a model version by its served name (a job record's
// model field).
func (i *Ingress) servedModel(served string) (*config.Model, bool) {
	if i.opt.Catalog == nil {
		return i.opt.Config.Model(served)
	}
	return i.opt.Catalog.Snapshot().Lookup(served)
}
