package ingress

import (
	"github.com/inferq/inferq/internal/config"
	"github.com/inferq/inferq/internal/obs"
)

// Route is one (method, path) the API serves, in Echo's `:param` form.
type Route struct{ Method, Path string }

// Routes lists every route the ingress serves, for docs and tests (the
// OpenAPI document is checked against it).
func Routes() []Route {
	cfg := config.Default()
	reg := obs.NewRegistry()
	i := New(Options{Config: &cfg, Registry: reg, Metrics: obs.NewMetrics(reg)})
	var out []Route
	for _, r := range i.echo.Routes() {
		out = append(out, Route{Method: r.Method, Path: r.Path})
	}
	return out
}
