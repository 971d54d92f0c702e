package console

import (
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"sync"
	"testing"
)

// TestBatchesPages: the Batches list and a batch's page read the Batch API
// in process; a running batch's page reloads itself and has a Cancel
// button that needs the CSRF token and calls the API's cancel; files
// download through the API's content route; bad ids never reach the API.
func TestBatchesPages(t *testing.T) {
	const id = "batch_01m8qayk9emnng37p9srp5dq1h"
	var mu sync.Mutex
	var calls []string
	api := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		mu.Lock()
		calls = append(calls, r.Method+" "+r.URL.RequestURI())
		mu.Unlock()
		w.Header().Set("Content-Type", "application/json")
		running := `{"id":"` + id + `","object":"batch","endpoint":"/v1/completions","input_file_id":"file-in1","status":"in_progress","created_at":1796079570,"request_counts":{"total":10,"completed":4,"failed":1}}`
		switch r.Method + " " + r.URL.Path {
		case "GET /openai/v1/batches":
			_, _ = w.Write([]byte(`{"object":"list","data":[` + running + `],"first_id":"` + id + `","last_id":"` + id + `","has_more":true}`))
		case "GET /openai/v1/batches/" + id:
			_, _ = w.Write([]byte(running))
		case "POST /openai/v1/batches/" + id + "/cancel":
			_, _ = w.Write([]byte(running))
		case "GET /openai/v1/files/file-in1/content":
			_, _ = w.Write([]byte("{\"custom_id\":\"a\"}\n"))
		default:
			w.WriteHeader(http.StatusNotFound)
			_, _ = w.Write([]byte(`{"error":{"message":"no such thing","code":"not_found"}}`))
		}
	})
	c, err := New(Options{Backend: fakeBackend{api: api}})
	if err != nil {
		t.Fatal(err)
	}
	list := get(t, c, Prefix+"/batches")
	for _, want := range []string{`href="/ui/batches/` + id + `"`, `<progress max="10" value="5"`, "5 / 10 (1 failed)", "in_progress",
		`href="/ui/batches?after=` + id + `"`, `aria-current="page">Batches`} {
		if !strings.Contains(list, want) {
			t.Errorf("batches page lacks %q", want)
		}
	}
	page := get(t, c, Prefix+"/batches/"+id)
	for _, want := range []string{`http-equiv="refresh"`, "4 completed, 1 failed of 10", `action="/ui/batches/` + id + `/cancel"`, `href="/ui/files/file-in1/content"`} {
		if !strings.Contains(page, want) {
			t.Errorf("batch page lacks %q", want)
		}
	}

	// Cancel: refused without the CSRF token, sent with it.
	w := httptest.NewRecorder()
	c.ServeHTTP(w, httptest.NewRequest(http.MethodPost, Prefix+"/batches/"+id+"/cancel", nil))
	if w.Code != http.StatusForbidden {
		t.Errorf("cancel without CSRF: %d", w.Code)
	}
	const tok = "0123456789abcdefghjkmnpqrs"
	r := httptest.NewRequest(http.MethodPost, Prefix+"/batches/"+id+"/cancel", strings.NewReader(url.Values{"csrf": {tok}}.Encode()))
	r.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	r.AddCookie(&http.Cookie{Name: csrfCookie, Value: tok})
	w = httptest.NewRecorder()
	c.ServeHTTP(w, r)
	if w.Code != http.StatusSeeOther || !strings.Contains(w.Header().Get("Location"), "notice=cancelling") {
		t.Errorf("cancel: %d, Location %q", w.Code, w.Header().Get("Location"))
	}

	w = httptest.NewRecorder()
	c.ServeHTTP(w, httptest.NewRequest(http.MethodGet, Prefix+"/files/file-in1/content", nil))
	if w.Code != http.StatusOK || w.Body.String() != "{\"custom_id\":\"a\"}\n" || !strings.Contains(w.Header().Get("Content-Disposition"), "attachment") {
		t.Errorf("file download: %d %q %v", w.Code, w.Body, w.Header())
	}
	for _, bad := range []string{"/batches/batch_..%2f", "/batches/nope", "/files/..%2Fx/content"} {
		w = httptest.NewRecorder()
		c.ServeHTTP(w, httptest.NewRequest(http.MethodGet, Prefix+bad, nil))
		if w.Code != http.StatusNotFound {
			t.Errorf("GET %s: %d", bad, w.Code)
		}
	}
	mu.Lock()
	defer mu.Unlock()
	want := []string{"GET /openai/v1/batches?limit=20", "GET /openai/v1/batches/" + id, "POST /openai/v1/batches/" + id + "/cancel",
		"GET /openai/v1/files/file-in1/content"}
	if strings.Join(calls, "\n") != strings.Join(want, "\n") {
		t.Errorf("API calls:\n%s\nwant\n%s", strings.Join(calls, "\n"), strings.Join(want, "\n"))
	}
}
