// Package console is inferq's web console, served by the ingress at /ui:
// server-rendered pages (html/template, a little plain JavaScript, every
// asset embedded) for operators to watch the queues, find a job, and cancel
// or replay jobs. It reads through a Backend the ingress implements, and it
// acts only through the ingress's own API, called in process with the
// session's credential, so a console session can do exactly what its key
// or token can do over HTTP.
package console

import (
	"bytes"
	"context"
	"crypto/rand"
	"crypto/subtle"
	"embed"
	"encoding/json"
	"errors"
	"fmt"
	"html/template"
	"io"
	"io/fs"
	"log/slog"
	"net/http"
	"net/url"
	"strings"
	"time"

	"github.com/labstack/echo/v4"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/inferq/inferq/internal/auth"
)

// Prefix is where the ingress mounts the console.
const Prefix = "/ui"

// Cookies: the session holds the credential the user logged in with (an
// API key or a JWT; while auth is off, a random value), the CSRF cookie a
// random token every form repeats (double submit). Both are HttpOnly and
// SameSite=Strict, so neither script nor another site's form can use them.
const (
	sessionCookie = "inferq_session"
	csrfCookie    = "inferq_csrf"
	csrfField     = "csrf"
)

//go:embed assets
var assets embed.FS

// Options configure the console.
type Options struct {
	Backend Backend
	// Auth checks the session's credential; nil or disabled: every visitor
	// is tenant "default" with every scope, as on the API.
	Auth *auth.Authenticator
	// Gatherer is the ingress's metrics registry, sampled for the charts;
	// nil draws none.
	Gatherer prometheus.Gatherer
	Models   []string // the configured models' names, for filters and charts
	// ModelNames, when set, lists the models now instead of Models: with
	// the model registry on, models are added and removed at run time.
	ModelNames func() []string
	// TraceURL links a job's trace id: "{trace_id}" in it is replaced by
	// the id; empty shows the id without a link.
	TraceURL string
	Secure   bool // the ingress serves TLS: cookies are Secure
	Log      *slog.Logger
}

// Console serves /ui.
type Console struct {
	opt     Options
	e       *echo.Echo
	pages   map[string]*template.Template
	sampler *sampler
	// stopping is closed when Run ends (the ingress is shutting down), so
	// that overview streams end instead of holding the drain open.
	stopping chan struct{}
}

// New builds the console's routes and templates.
func New(opt Options) (*Console, error) {
	if opt.Log == nil {
		opt.Log = slog.New(slog.DiscardHandler)
	}
	c := &Console{opt: opt, e: echo.New(), stopping: make(chan struct{})}
	c.sampler = newSampler(opt.Gatherer, c.models)
	if err := c.parse(); err != nil {
		return nil, err
	}
	e := c.e
	e.HideBanner, e.HidePort = true, true
	e.HTTPErrorHandler = c.handleError
	static, _ := fs.Sub(assets, "assets/static")
	e.GET(Prefix+"/static/*", echo.WrapHandler(http.StripPrefix(Prefix+"/static/", http.FileServerFS(static))))
	e.GET(Prefix+"/login", c.loginPage, c.csrf)
	e.POST(Prefix+"/login", c.login, c.csrf)
	g := e.Group(Prefix, c.csrf, c.session)
	g.POST("/logout", c.logout)
	g.GET("", c.overview)
	g.GET("/", c.overview)
	g.GET("/overview/stream", c.overviewStream)
	g.GET("/jobs", c.jobs)
	g.GET("/jobs/:id", c.job)
	g.GET("/jobs/:id/events", c.jobEvents)
	g.POST("/jobs/:id/cancel", c.cancelJob)
	g.POST("/jobs/:id/replay", c.replayJob)
	g.GET("/dead", c.dead, requireScope(auth.ScopeAdmin))
	g.POST("/dead/replay", c.replayDead, requireScope(auth.ScopeAdmin))
	g.GET("/workers", c.workers)
	g.GET("/batches", c.batches)
	g.GET("/batches/:id", c.batch)
	g.POST("/batches/:id/cancel", c.cancelBatch)
	g.GET("/files/:id/content", c.fileContent)
	return c, nil
}

// models are the models' names now, for filters and charts.
func (c *Console) models() []string {
	if c.opt.ModelNames != nil {
		return c.opt.ModelNames()
	}
	return c.opt.Models
}

// ServeHTTP serves a request under /ui.
func (c *Console) ServeHTTP(w http.ResponseWriter, r *http.Request) { c.e.ServeHTTP(w, r) }

// Run samples the charts' figures until ctx ends; call it once.
func (c *Console) Run(ctx context.Context) {
	defer close(c.stopping)
	c.sampler.run(ctx)
}

// Owns reports whether the console serves path.
func Owns(path string) bool { return path == Prefix || strings.HasPrefix(path, Prefix+"/") }

// session is a request's logged-in user.
type session struct {
	cred string // the credential, sent to the API as a bearer token; "" while auth is off
	p    *auth.Principal
}

const sessionKey = "inferq.console.session"

func sessionOf(c echo.Context) *session {
	s, _ := c.Get(sessionKey).(*session)
	return s
}

func (c *Console) authOn() bool { return c.opt.Auth != nil && c.opt.Auth.Enabled() }

// session authenticates the session cookie's credential on every request
// (a revoked key or an expired JWT ends the session at once) and sends a
// visitor without a valid one to the login page.
func (c *Console) session(next echo.HandlerFunc) echo.HandlerFunc {
	return func(ec echo.Context) error {
		if !c.authOn() {
			ec.Set(sessionKey, &session{p: &auth.Principal{Tenant: auth.DefaultTenant, Scopes: auth.AllScopes, Method: auth.MethodNone}})
			return next(ec)
		}
		ck, err := ec.Cookie(sessionCookie)
		if err == nil && ck.Value != "" {
			p, err := c.opt.Auth.AuthenticateCredential(ck.Value)
			if err == nil && p.Has(auth.ScopeRead) {
				ec.Set(sessionKey, &session{cred: ck.Value, p: p})
				return next(ec)
			}
			c.setCookie(ec, sessionCookie, "", -1)
		}
		if ec.Request().Method != http.MethodGet {
			return echo.NewHTTPError(http.StatusUnauthorized, "your session has ended; log in again")
		}
		return ec.Redirect(http.StatusSeeOther, Prefix+"/login?next="+url.QueryEscape(ec.Request().URL.RequestURI()))
	}
}

// requireScope refuses a page to a session without scope.
func requireScope(scope string) echo.MiddlewareFunc {
	return func(next echo.HandlerFunc) echo.HandlerFunc {
		return func(ec echo.Context) error {
			if s := sessionOf(ec); s == nil || !s.p.Has(scope) {
				return echo.NewHTTPError(http.StatusForbidden, "this page needs the "+scope+" scope")
			}
			return next(ec)
		}
	}
}

// csrf gives every visitor a CSRF token (a cookie) and refuses a POST
// whose form does not repeat it.
func (c *Console) csrf(next echo.HandlerFunc) echo.HandlerFunc {
	return func(ec echo.Context) error {
		tok := ""
		if ck, err := ec.Cookie(csrfCookie); err == nil && len(ck.Value) == 26 {
			tok = ck.Value
		}
		if ec.Request().Method == http.MethodPost {
			sent := ec.FormValue(csrfField)
			if tok == "" || subtle.ConstantTimeCompare([]byte(sent), []byte(tok)) != 1 {
				return echo.NewHTTPError(http.StatusForbidden, "the form's CSRF token is missing or stale; reload the page and try again")
			}
		}
		if tok == "" {
			tok = rand.Text()
			c.setCookie(ec, csrfCookie, tok, 0)
		}
		ec.Set(csrfField, tok)
		return next(ec)
	}
}

func (c *Console) setCookie(ec echo.Context, name, value string, maxAge int) {
	ec.SetCookie(&http.Cookie{Name: name, Value: value, Path: Prefix, MaxAge: maxAge, HttpOnly: true,
		Secure: c.opt.Secure, SameSite: http.SameSiteStrictMode})
}

// loginPage shows the login form (or, while auth is off, the overview).
func (c *Console) loginPage(ec echo.Context) error {
	if !c.authOn() {
		return ec.Redirect(http.StatusSeeOther, Prefix+"/")
	}
	return c.render(ec, http.StatusOK, "login", map[string]any{"Next": safeNext(ec.QueryParam("next"))})
}

// login checks a credential exactly as the API does (with the same
// throttle of addresses whose credentials keep failing) and keeps it in the
// session cookie. The console needs the read scope; actions need what the
// API needs for them.
func (c *Console) login(ec echo.Context) error {
	if !c.authOn() {
		return ec.Redirect(http.StatusSeeOther, Prefix+"/")
	}
	next := safeNext(ec.FormValue("next"))
	cred := strings.TrimSpace(ec.FormValue("credential"))
	addr, now := ec.RealIP(), time.Now()
	if ok, wait := c.opt.Auth.Failures().Allow(addr, now); !ok {
		return c.render(ec, http.StatusTooManyRequests, "login", map[string]any{"Next": next,
			"Error": fmt.Sprintf("Too many failed logins from your address; try again in %s.", wait.Round(time.Second))})
	}
	p, err := c.opt.Auth.AuthenticateCredential(cred)
	if err != nil {
		if errors.Is(err, auth.ErrInvalidCredentials) {
			c.opt.Auth.Failures().Fail(addr, now)
		}
		return c.render(ec, http.StatusUnauthorized, "login", map[string]any{"Next": next, "Error": "That key or token is not valid."})
	}
	if !p.Has(auth.ScopeRead) {
		return c.render(ec, http.StatusForbidden, "login", map[string]any{"Next": next, "Error": "That credential lacks the read scope the console needs."})
	}
	c.setCookie(ec, sessionCookie, cred, 0)
	c.opt.Log.Info("console login", "tenant", p.Tenant, "subject", p.Subject, "scopes", p.Scopes.String())
	return ec.Redirect(http.StatusSeeOther, next)
}

func (c *Console) logout(ec echo.Context) error {
	c.setCookie(ec, sessionCookie, "", -1)
	if !c.authOn() {
		return ec.Redirect(http.StatusSeeOther, Prefix+"/")
	}
	return ec.Redirect(http.StatusSeeOther, Prefix+"/login")
}

// safeNext keeps a post-login redirect inside the console.
func safeNext(next string) string {
	if !Owns(strings.SplitN(next, "?", 2)[0]) || strings.HasPrefix(next, "//") || strings.Contains(next, "\\") {
		return Prefix + "/"
	}
	return next
}

// apiAnswer is an in-process API call's answer.
type apiAnswer struct {
	status int
	body   []byte
}

// apiError is the API's error body's message, or the status text.
func (a apiAnswer) err() error {
	var e struct {
		Error struct{ Code, Message string } `json:"error"`
	}
	if json.Unmarshal(a.body, &e) == nil && e.Error.Message != "" {
		return &echo.HTTPError{Code: a.status, Message: e.Error.Message}
	}
	return &echo.HTTPError{Code: a.status, Message: http.StatusText(a.status)}
}

// call sends a request to the ingress's API in process, as the session:
// the same authentication, scope checks, rate limits and tenant rules as
// any HTTP client gets.
func (c *Console) call(ec echo.Context, method, path string, body []byte) apiAnswer {
	r := c.apiRequest(ec, method, path, body)
	w := &recorder{h: http.Header{}, status: http.StatusOK}
	c.opt.Backend.API().ServeHTTP(w, r)
	return apiAnswer{status: w.status, body: w.buf.Bytes()}
}

func (c *Console) apiRequest(ec echo.Context, method, path string, body []byte) *http.Request {
	orig := ec.Request()
	r, _ := http.NewRequestWithContext(orig.Context(), method, path, bytes.NewReader(body))
	r.RemoteAddr = orig.RemoteAddr
	for _, h := range []string{"X-Forwarded-For", "X-Real-Ip", auth.HeaderRequestID} {
		if v := orig.Header.Get(h); v != "" {
			r.Header.Set(h, v)
		}
	}
	if body != nil {
		r.Header.Set("Content-Type", "application/json")
	}
	if s := sessionOf(ec); s != nil && s.cred != "" {
		r.Header.Set("Authorization", "Bearer "+s.cred)
	}
	return r
}

// recorder keeps an in-process API answer.
type recorder struct {
	h      http.Header
	status int
	buf    bytes.Buffer
	wrote  bool
}

func (w *recorder) Header() http.Header { return w.h }
func (w *recorder) WriteHeader(s int) {
	if !w.wrote {
		w.status, w.wrote = s, true
	}
}
func (w *recorder) Write(b []byte) (int, error) {
	w.wrote = true
	return w.buf.Write(b)
}

// handleError renders an error as a page (or, for the event streams, as
// text).
func (c *Console) handleError(err error, ec echo.Context) {
	if ec.Response().Committed {
		return
	}
	status, msg := http.StatusInternalServerError, "internal error"
	var he *echo.HTTPError
	if errors.As(err, &he) {
		status = he.Code
		if s, ok := he.Message.(string); ok {
			msg = s
		} else {
			msg = http.StatusText(status)
		}
	} else {
		c.opt.Log.Error("console error", "path", ec.Request().URL.Path, "err", err)
	}
	if strings.HasSuffix(ec.Request().URL.Path, "/stream") || strings.HasSuffix(ec.Request().URL.Path, "/events") {
		_ = ec.String(status, msg)
		return
	}
	if rerr := c.render(ec, status, "error", map[string]any{"Status": status, "Message": msg}); rerr != nil {
		_ = ec.String(status, msg)
	}
}

// render executes a page inside the layout.
func (c *Console) render(ec echo.Context, status int, page string, data map[string]any) error {
	t, ok := c.pages[page]
	if !ok {
		return fmt.Errorf("console: no page %q", page)
	}
	if data == nil {
		data = map[string]any{}
	}
	data["CSRF"], _ = ec.Get(csrfField).(string)
	data["Page"] = page
	data["AuthOn"] = c.authOn()
	if s := sessionOf(ec); s != nil {
		data["Tenant"], data["Scopes"] = s.p.Tenant, s.p.Scopes.String()
		data["Admin"] = s.p.Has(auth.ScopeAdmin)
	}
	var b bytes.Buffer
	if err := t.ExecuteTemplate(&b, "layout", data); err != nil {
		return fmt.Errorf("console: render %s: %w", page, err)
	}
	h := ec.Response().Header()
	h.Set("Content-Security-Policy", "default-src 'self'; img-src 'self' data:; style-src 'self'; script-src 'self'; frame-ancestors 'none'; form-action 'self'")
	h.Set("X-Content-Type-Options", "nosniff")
	h.Set("Cache-Control", "no-store")
	return ec.HTMLBlob(status, b.Bytes())
}

// parse reads the embedded templates: every page is the layout plus its
// own file.
func (c *Console) parse() error {
	funcs := template.FuncMap{"num": num, "ago": ago, "when": when, "dur": dur, "unix": unix}
	c.pages = map[string]*template.Template{}
	layout, err := fs.ReadFile(assets, "assets/templates/layout.html")
	if err != nil {
		return fmt.Errorf("console templates: %w", err)
	}
	entries, err := fs.ReadDir(assets, "assets/templates")
	if err != nil {
		return fmt.Errorf("console templates: %w", err)
	}
	for _, e := range entries {
		name := strings.TrimSuffix(e.Name(), ".html")
		if name == "layout" {
			continue
		}
		body, err := fs.ReadFile(assets, "assets/templates/"+e.Name())
		if err != nil {
			return fmt.Errorf("console templates: %w", err)
		}
		t, err := template.New("layout").Funcs(funcs).Parse(string(layout))
		if err == nil {
			_, err = t.Parse(string(body))
		}
		if err != nil {
			return fmt.Errorf("console template %s: %w", e.Name(), err)
		}
		c.pages[name] = t
	}
	return nil
}

// ago is how long before now t was, for people.
func ago(t time.Time) string {
	if t.IsZero() {
		return "—"
	}
	d := time.Since(t)
	switch {
	case d < time.Second:
		return "just now"
	case d < time.Minute:
		return fmt.Sprintf("%ds ago", int(d.Seconds()))
	case d < time.Hour:
		return fmt.Sprintf("%dm ago", int(d.Minutes()))
	}
	return d.Round(time.Minute).String() + " ago"
}

// when formats a time (nil or zero: "—").
func when(v any) string {
	var t time.Time
	switch x := v.(type) {
	case time.Time:
		t = x
	case *time.Time:
		if x != nil {
			t = *x
		}
	}
	if t.IsZero() {
		return "—"
	}
	return t.UTC().Format("2006-01-02 15:04:05.000Z")
}

// dur is the time from a to b (either missing: "—").
func dur(a, b any) string {
	ta, tb := toTime(a), toTime(b)
	if ta.IsZero() || tb.IsZero() {
		return "—"
	}
	return seconds(tb.Sub(ta).Seconds())
}

func toTime(v any) time.Time {
	switch x := v.(type) {
	case time.Time:
		return x
	case *time.Time:
		if x != nil {
			return *x
		}
	}
	return time.Time{}
}

var _ io.Writer = (*recorder)(nil)
