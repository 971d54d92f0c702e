package ingress

import (
	"github.com/inferq/inferq/internal/config"
)

// Route is one (method, path) the API serves, in Echo's `:param` form.
type Route struct{ Method, Path string }

// Routes lists every route the ingress serves, for docs and tests (the
// OpenAPI document is checked against it).
func Routes() []Route {
	cfg := config.Default()
	i := New(Options{Config: &cfg})
	var out []Route
	for _, r := range i.echo.Routes() {
		out = append(out, Route{Method: r.Method, Path: r.Path})
	}
	return out
}
