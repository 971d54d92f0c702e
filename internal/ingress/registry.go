package ingress

import (
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"strconv"
	"strings"

	"github.com/labstack/echo/v4"

	"github.com/inferq/inferq/internal/config"
	"github.com/inferq/inferq/internal/registry"
)

// resolve is the model config a new job runs on: from the live registry
// when one is used (a version the job names, else the model's split or
// default picked by the job id), else from the config file.
func (i *Ingress) resolve(name, version, jobID string) (*config.Model, error) {
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
	m, err := i.opt.Catalog.Snapshot().Resolve(name, version, jobID)
	if err != nil {
		return nil, apiError(http.StatusNotFound, "not_found", err.Error())
	}
	return m, nil
}

// hashVersion is the version an idempotency hash names: the one the
// request named, or the resolved one unless a split picks it per job id
// (then a retry, which gets a new id, must still match).
func (i *Ingress) hashVersion(name, asked string, m *config.Model) string {
	if asked != "" || i.opt.Catalog == nil {
		return m.Version
	}
	if e, ok := i.opt.Catalog.Snapshot().Entry(name); ok && len(e.Split) > 0 {
		return ""
	}
	return m.Version
}

// modelOf is the model a served name belongs to (registry.ServedName).
func modelOf(served string) string { m, _, _ := strings.Cut(served, "@"); return m }

// registryRouting is the routing part of PUT /v1/models/{model}'s body: a model config, and the
// model's routing besides.
type registryRouting struct {
	Default *string         `json:"default_version"`
	Split   *map[string]int `json:"split"`
}

// putModel registers a model config (as its body's version, default "1")
// and sets the model's routing (default_version, split) when the body
// names it; a body of routing alone changes only the routing.
func (i *Ingress) putModel(c echo.Context) error {
	return i.putRegistry(c, c.Param("model"), "", true)
}

// putVersion registers a model config as the version in the path.
func (i *Ingress) putVersion(c echo.Context) error {
	return i.putRegistry(c, c.Param("model"), c.Param("version"), false)
}

func (i *Ingress) putRegistry(c echo.Context, model, version string, routing bool) error {
	if i.opt.Models == nil {
		return registryOff()
	}
	body, err := io.ReadAll(http.MaxBytesReader(c.Response(), c.Request().Body, 1<<20))
	if err != nil {
		return invalid("request body: %v", err)
	}
	var doc map[string]json.RawMessage
	if err := json.Unmarshal(body, &doc); err != nil {
		return invalid("request body: not a JSON object: %v", err)
	}
	var r registryRouting
	_, hasSplit := doc["split"]
	if routing {
		_ = json.Unmarshal(body, &r)    // the object decoded above
		if hasSplit && r.Split == nil { // "split": null clears it
			r.Split = &map[string]int{}
		}
		delete(doc, "default_version")
		delete(doc, "split")
	} else if doc["default_version"] != nil || doc["split"] != nil {
		return invalid("default_version and split are the model's: PUT them on /v1/models/%s", model)
	}
	ctx := c.Request().Context()
	out := map[string]any{"name": model}
	if len(doc) > 0 || r.Default == nil && r.Split == nil {
		cfgJSON, _ := json.Marshal(doc) // raw messages re-encode as read
		m, err := config.ParseModel(cfgJSON)
		if err != nil {
			return invalid("%v", err)
		}
		if m.Name != model {
			return invalid("name: %q differs from the model %q in the path", m.Name, model)
		}
		var named struct {
			Version string `json:"version"`
		}
		_ = json.Unmarshal(cfgJSON, &named)
		switch {
		case version == "":
			version = m.Version // "1" when the body names none
		case named.Version != "" && named.Version != version:
			return invalid("version: %q differs from the version %q in the path", named.Version, version)
		}
		if err := i.opt.Models.PutVersion(ctx, model, version, m); err != nil {
			return registryError(err)
		}
		out["version"] = version
		i.opt.Log.Info("model version registered", "model", model, "version", version)
	}
	if r.Default != nil || r.Split != nil {
		def, split := "", map[string]int(nil)
		if r.Default != nil {
			def = *r.Default
		}
		if r.Split != nil && len(*r.Split) > 0 {
			split = *r.Split
		}
		if err := i.opt.Models.SetRouting(ctx, model, def, split, r.Split != nil); err != nil {
			return registryError(err)
		}
		i.opt.Log.Info("model routing set", "model", model, "default", def, "split", split)
	}
	return c.JSON(http.StatusOK, out)
}

// deleteModel retires every version of a model; deleteVersion one. The
// answer is 202: retired versions take no new jobs and drain before their
// consumers and keys go.
func (i *Ingress) deleteModel(c echo.Context) error { return i.retire(c, c.Param("model"), "") }

func (i *Ingress) deleteVersion(c echo.Context) error {
	return i.retire(c, c.Param("model"), c.Param("version"))
}

func (i *Ingress) retire(c echo.Context, model, version string) error {
	if i.opt.Models == nil {
		return registryOff()
	}
	if err := i.opt.Models.Retire(c.Request().Context(), model, version); err != nil {
		return registryError(err)
	}
	i.opt.Log.Info("model retired; draining", "model", model, "version", version)
	return c.JSON(http.StatusAccepted, map[string]any{"name": model, "version": version, "status": "draining"})
}

func registryOff() error {
	return apiError(http.StatusConflict, "registry_off",
		"the model registry is off: models come from the config file (set registry: true to manage them over the API)")
}

func registryError(err error) error {
	switch {
	case errors.Is(err, registry.ErrInvalid):
		return invalid("%v", err)
	case errors.Is(err, registry.ErrNotFound):
		return apiError(http.StatusNotFound, "not_found", err.Error())
	case errors.Is(err, registry.ErrConflict):
		return apiError(http.StatusConflict, "conflict", err.Error())
	}
	return apiError(http.StatusServiceUnavailable, "unavailable", "model registry: "+err.Error())
}
