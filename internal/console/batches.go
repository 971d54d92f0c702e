package console

import (
	"encoding/json"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"time"

	"github.com/labstack/echo/v4"

	"github.com/inferq/inferq/internal/openai"
)

// The Batches pages show the OpenAI Batch API's batches of the session's
// tenant. Every read and the cancel go through /openai/v1 in process, with
// the session's credential, so the API's own tenant and scope checks apply.

// batchesPage is how many batches one page lists.
const batchesPage = 20

// batchRow is a batch with what its page shows computed.
type batchRow struct {
	openai.Batch
	Done     int // lines completed or failed
	Percent  int
	Terminal bool
}

func newBatchRow(b openai.Batch) batchRow {
	r := batchRow{Batch: b, Done: b.RequestCounts.Completed + b.RequestCounts.Failed, Terminal: openai.BatchTerminal(b.Status)}
	if b.RequestCounts.Total > 0 {
		r.Percent = 100 * r.Done / b.RequestCounts.Total
	}
	return r
}

// Finished is when the batch reached its end, 0 while it runs.
func (r batchRow) Finished() int64 {
	for _, t := range []*int64{r.CompletedAt, r.FailedAt, r.CancelledAt, r.ExpiredAt} {
		if t != nil {
			return *t
		}
	}
	return 0
}

// validBatchID: batch_ and 26 lowercase letters and digits, as the API
// makes them; anything else is not looked up.
func validBatchID(id string) bool {
	rest, ok := strings.CutPrefix(id, "batch_")
	return ok && len(rest) == 26 && strings.Trim(rest, "0123456789abcdefghjkmnpqrstvwxyz") == ""
}

// validFileID: the API's file ids, file- and letters, digits and "-".
func validFileID(id string) bool {
	rest, ok := strings.CutPrefix(id, "file-")
	return ok && rest != "" && len(rest) <= 80 && strings.Trim(rest, "0123456789abcdefghijklmnopqrstuvwxyz-") == ""
}

// batches handles GET /ui/batches?after=: the tenant's batches, newest
// first, a page at a time.
func (c *Console) batches(ec echo.Context) error {
	q := url.Values{"limit": {strconv.Itoa(batchesPage)}}
	after := ec.QueryParam("after")
	if after != "" {
		if !validBatchID(after) {
			return echo.NewHTTPError(http.StatusBadRequest, "after: not a batch id")
		}
		q.Set("after", after)
	}
	a := c.call(ec, http.MethodGet, "/openai/v1/batches?"+q.Encode(), nil)
	if a.status != http.StatusOK {
		return a.err()
	}
	var list openai.BatchList
	if err := json.Unmarshal(a.body, &list); err != nil {
		return echo.NewHTTPError(http.StatusBadGateway, "the batch list does not decode: "+err.Error())
	}
	rows := make([]batchRow, 0, len(list.Data))
	for _, b := range list.Data {
		rows = append(rows, newBatchRow(b))
	}
	data := map[string]any{"Batches": rows, "After": after}
	if list.HasMore && list.LastID != nil {
		data["Next"] = *list.LastID
	}
	return c.render(ec, http.StatusOK, "batches", data)
}

// readBatch reads the batch named in the path through the API.
func (c *Console) readBatch(ec echo.Context) (openai.Batch, error) {
	id := ec.Param("id")
	if !validBatchID(id) {
		return openai.Batch{}, echo.NewHTTPError(http.StatusNotFound, "batch "+strconv.Quote(id)+" not found")
	}
	a := c.call(ec, http.MethodGet, "/openai/v1/batches/"+id, nil)
	if a.status != http.StatusOK {
		return openai.Batch{}, a.err()
	}
	var b openai.Batch
	if err := json.Unmarshal(a.body, &b); err != nil {
		return openai.Batch{}, echo.NewHTTPError(http.StatusBadGateway, "the batch does not decode: "+err.Error())
	}
	return b, nil
}

// batch handles GET /ui/batches/{id}: one batch, its files and its
// progress, reloading itself every 2s until the batch ends.
func (c *Console) batch(ec echo.Context) error {
	b, err := c.readBatch(ec)
	if err != nil {
		return err
	}
	return c.batchPage(ec, http.StatusOK, b, batchNotices[ec.QueryParam("notice")], "")
}

var batchNotices = map[string]string{
	"cancelling": "Cancel requested: the lines in flight are cancelled, then the files of what finished are written.",
}

func (c *Console) batchPage(ec echo.Context, status int, b openai.Batch, notice, errMsg string) error {
	r := newBatchRow(b)
	return c.render(ec, status, "batch", map[string]any{"Batch": r, "Live": !r.Terminal, "Notice": notice, "Error": errMsg})
}

// cancelBatch handles POST /ui/batches/{id}/cancel (POST
// /openai/v1/batches/{id}/cancel, with its scope check).
func (c *Console) cancelBatch(ec echo.Context) error {
	id := ec.Param("id")
	if !validBatchID(id) {
		return echo.NewHTTPError(http.StatusNotFound, "batch "+strconv.Quote(id)+" not found")
	}
	a := c.call(ec, http.MethodPost, "/openai/v1/batches/"+id+"/cancel", []byte("{}"))
	if a.status/100 == 2 {
		return ec.Redirect(http.StatusSeeOther, Prefix+"/batches/"+id+"?notice=cancelling")
	}
	refusal := a.err()
	b, err := c.readBatch(ec)
	if err != nil {
		return refusal
	}
	return c.batchPage(ec, a.status, b, "", refusal.(*echo.HTTPError).Message.(string))
}

// fileContent handles GET /ui/files/{id}/content: a batch's input, output
// or error file, downloaded through GET /openai/v1/files/{id}/content.
func (c *Console) fileContent(ec echo.Context) error {
	id := ec.Param("id")
	if !validFileID(id) {
		return echo.NewHTTPError(http.StatusNotFound, "file "+strconv.Quote(id)+" not found")
	}
	a := c.call(ec, http.MethodGet, "/openai/v1/files/"+id+"/content", nil)
	if a.status != http.StatusOK {
		return a.err()
	}
	h := ec.Response().Header()
	h.Set("Content-Disposition", `attachment; filename="`+id+`.jsonl"`)
	h.Set("X-Content-Type-Options", "nosniff")
	return ec.Blob(http.StatusOK, "application/jsonl", a.body)
}

// unix formats Unix seconds (an int64, or a *int64 that may be nil) as
// when does; 0 or nil is "—".
func unix(v any) string {
	var s int64
	switch x := v.(type) {
	case int64:
		s = x
	case *int64:
		if x != nil {
			s = *x
		}
	}
	if s == 0 {
		return "—"
	}
	return when(time.Unix(s, 0))
}
