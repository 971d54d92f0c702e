package ingress

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/labstack/echo/v4"
	natsjs "github.com/nats-io/nats.go/jetstream"

	"github.com/inferq/inferq/internal/jobid"
	"github.com/inferq/inferq/internal/openai"
)

// The Batch API's batches (POST/GET /openai/v1/batches, cancel): each batch
// is a record in the batch records bucket under <tenant hash>.<batch id>,
// so a tenant reads and lists only its own; creating one also queues a
// message on the batch work stream, which a runner (batchrun.go) takes.

// batchRecord is a batch as stored: what the API shows, and the runner's
// progress.
type batchRecord struct {
	Batch  openai.Batch `json:"batch"`
	Tenant string       `json:"tenant"`
	// Queued is a high-water mark: lines [0, Queued) of the input's
	// requests have been queued as jobs.
	Queued int `json:"queued,omitempty"`
	// Runs counts the runs that started queueing lines: a run after the
	// first looks up each line's job before queueing it.
	Runs int `json:"runs,omitempty"`
}

// batchIDPrefix starts every batch id, as OpenAI's do.
const batchIDPrefix = "batch_"

func newBatchID() string { return batchIDPrefix + jobid.New() }

func validBatchID(id string) bool {
	rest, ok := strings.CutPrefix(id, batchIDPrefix)
	return ok && jobid.Valid(rest)
}

func tenantKey(tenant string) string { return openai.BatchTenantKey(tenant) }

func batchKey(tenant, id string) string { return openai.BatchKey(tenant, id) }

func batchNotFound(id string) error {
	return &openai.Error{Status: http.StatusNotFound, Type: openai.TypeInvalidRequest, Param: "batch_id", Code: "batch_not_found",
		Message: "No such Batch object: " + id}
}

// batchStore opens the batch records bucket once.
type batchStore struct {
	mu sync.Mutex
	kv natsjs.KeyValue
}

func (i *Ingress) batchKV(ctx context.Context) (natsjs.KeyValue, error) {
	i.batchRecs.mu.Lock()
	defer i.batchRecs.mu.Unlock()
	if i.batchRecs.kv != nil {
		return i.batchRecs.kv, nil
	}
	kv, err := i.opt.JS.KeyValue(ctx, i.opt.Topology.BatchRecordsBucket())
	if err != nil {
		return nil, fmt.Errorf("bucket %s: %w", i.opt.Topology.BatchRecordsBucket(), err)
	}
	i.batchRecs.kv = kv
	return kv, nil
}

// errBatchNotFound is a key with no batch record.
var errBatchNotFound = errors.New("batch not found")

// getBatch reads the record under key and its revision.
func (i *Ingress) getBatch(ctx context.Context, key string) (*batchRecord, uint64, error) {
	kv, err := i.batchKV(ctx)
	if err != nil {
		return nil, 0, err
	}
	e, err := kv.Get(ctx, key)
	if errors.Is(err, natsjs.ErrKeyNotFound) {
		return nil, 0, errBatchNotFound
	}
	if err != nil {
		return nil, 0, fmt.Errorf("batch %s: %w", key, err)
	}
	var rec batchRecord
	if err := json.Unmarshal(e.Value(), &rec); err != nil {
		return nil, 0, fmt.Errorf("batch %s: record does not decode: %w", key, err)
	}
	return &rec, e.Revision(), nil
}

// updateBatch applies change to the record under key, again on a fresh
// read when another writer (a cancel, another runner) got there first.
// change returns false to write nothing.
func (i *Ingress) updateBatch(ctx context.Context, key string, change func(*batchRecord) bool) (*batchRecord, error) {
	kv, err := i.batchKV(ctx)
	if err != nil {
		return nil, err
	}
	for {
		rec, rev, err := i.getBatch(ctx, key)
		if err != nil {
			return nil, err
		}
		if !change(rec) {
			return rec, nil
		}
		b, err := json.Marshal(rec)
		if err != nil {
			return nil, err
		}
		_, err = kv.Update(ctx, key, b, rev)
		if err == nil {
			return rec, nil
		}
		if !errors.Is(err, natsjs.ErrKeyExists) || ctx.Err() != nil {
			return nil, fmt.Errorf("batch %s: update: %w", key, err)
		}
	}
}

func (i *Ingress) batchUnavailable(op string, err error) error {
	i.opt.Log.Error("batch store unavailable", "op", op, "err", err)
	return &retryLater{apiError(http.StatusServiceUnavailable, "unavailable", "the batch store cannot be reached; retry later"), 1}
}

// createBatchBody is the body of POST /batches.
type createBatchBody struct {
	InputFileID      string            `json:"input_file_id"`
	Endpoint         string            `json:"endpoint"`
	CompletionWindow string            `json:"completion_window"`
	Metadata         map[string]string `json:"metadata"`
	// CallbackURL is inferq's extension: where the batch's completion
	// webhook goes (else the tenant's default, if any).
	CallbackURL string `json:"callback_url"`
}

// openaiCreateBatch handles POST /openai/v1/batches.
func (i *Ingress) openaiCreateBatch(c echo.Context) error {
	hr := c.Request()
	ctx := hr.Context()
	body, err := io.ReadAll(http.MaxBytesReader(c.Response(), hr.Body, 64<<10))
	if err != nil {
		return &openai.Error{Status: http.StatusBadRequest, Code: "invalid_body", Message: "request body unreadable: " + err.Error()}
	}
	var in createBatchBody
	dec := json.NewDecoder(strings.NewReader(string(body)))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&in); err != nil {
		return &openai.Error{Status: http.StatusBadRequest, Code: "invalid_json", Message: "the body must be a JSON object with input_file_id, endpoint and completion_window: " + err.Error()}
	}
	bad := func(param, format string, args ...any) error {
		return &openai.Error{Status: http.StatusBadRequest, Param: param, Code: "invalid_value", Message: fmt.Sprintf(format, args...)}
	}
	switch {
	case in.Endpoint != openai.EndpointCompletions && in.Endpoint != openai.EndpointChatCompletions:
		return bad("endpoint", "endpoint %q: want %s or %s", in.Endpoint, openai.EndpointCompletions, openai.EndpointChatCompletions)
	case in.CompletionWindow != openai.CompletionWindow:
		return bad("completion_window", "completion_window %q: only %q is supported", in.CompletionWindow, openai.CompletionWindow)
	case len(in.Metadata) > 16:
		return bad("metadata", "metadata has %d pairs; at most 16", len(in.Metadata))
	}
	for k, v := range in.Metadata {
		if len(k) > 64 || len(v) > 512 {
			return bad("metadata", "metadata %q: keys are at most 64 characters, values 512", k)
		}
	}
	tenant := tenantOf(c)
	callback, err := i.opt.Webhooks.CallbackURL(ctx, tenant, in.CallbackURL)
	if err != nil {
		return bad("callback_url", "%v", err)
	}
	info, err := i.fileInfo(ctx, tenant, in.InputFileID)
	if err != nil {
		var oe *openai.Error
		if errors.As(err, &oe) && oe.Status == http.StatusNotFound {
			oe.Param = "input_file_id"
		}
		return err
	}
	if info.Metadata[fileMetaPurpose] != openai.PurposeBatch {
		return bad("input_file_id", "file %s has purpose %q, not %q", in.InputFileID, info.Metadata[fileMetaPurpose], openai.PurposeBatch)
	}
	now := i.now().UTC()
	id := newBatchID()
	expires := now.Add(24 * time.Hour).Unix()
	rec := &batchRecord{Tenant: tenant, Batch: openai.Batch{ID: id, Object: "batch", Endpoint: in.Endpoint,
		InputFileID: in.InputFileID, CompletionWindow: in.CompletionWindow, Status: openai.BatchValidating,
		CreatedAt: now.Unix(), ExpiresAt: &expires, Metadata: in.Metadata}}
	if callback != "" {
		rec.Batch.Webhook = &openai.BatchWebhook{URL: callback}
	}
	b, _ := json.Marshal(rec) // plain strings and numbers: cannot fail
	kv, err := i.batchKV(ctx)
	if err != nil {
		return i.batchUnavailable("open", err)
	}
	key := batchKey(tenant, id)
	if _, err := kv.Create(ctx, key, b); err != nil {
		return i.batchUnavailable("create", err)
	}
	// The record first, then the work: a runner never finds work without
	// its record; a failed publish takes the record back.
	if _, err := i.opt.JS.Publish(ctx, i.opt.Topology.BatchWorkSubject(id), []byte(key), natsjs.WithMsgID(id)); err != nil {
		_ = kv.Delete(context.WithoutCancel(ctx), key)
		return i.batchUnavailable("publish", err)
	}
	i.opt.Log.Info("batch created", "batch", id, "tenant", tenant, "file", in.InputFileID, "endpoint", in.Endpoint)
	return c.JSON(http.StatusOK, rec.Batch)
}

// tenantBatch is the caller's batch named in the path.
func (i *Ingress) tenantBatch(c echo.Context) (string, *batchRecord, error) {
	id := c.Param("id")
	if !validBatchID(id) {
		return "", nil, batchNotFound(id)
	}
	key := batchKey(tenantOf(c), id)
	rec, _, err := i.getBatch(c.Request().Context(), key)
	if errors.Is(err, errBatchNotFound) {
		return "", nil, batchNotFound(id)
	}
	if err != nil {
		return "", nil, i.batchUnavailable("get", err)
	}
	return key, rec, nil
}

// openaiGetBatch handles GET /openai/v1/batches/{id}.
func (i *Ingress) openaiGetBatch(c echo.Context) error {
	_, rec, err := i.tenantBatch(c)
	if err != nil {
		return err
	}
	return c.JSON(http.StatusOK, rec.Batch)
}

// openaiCancelBatch handles POST /openai/v1/batches/{id}/cancel: the batch
// is cancelling until its runner has cancelled the jobs in flight and
// written what finished.
func (i *Ingress) openaiCancelBatch(c echo.Context) error {
	key, rec, err := i.tenantBatch(c)
	if err != nil {
		return err
	}
	if openai.BatchTerminal(rec.Batch.Status) {
		return &openai.Error{Status: http.StatusConflict, Param: "batch_id", Code: "batch_not_cancellable",
			Message: fmt.Sprintf("batch %s is %s and cannot be cancelled", rec.Batch.ID, rec.Batch.Status)}
	}
	now := i.now().Unix()
	rec, err = i.updateBatch(c.Request().Context(), key, func(r *batchRecord) bool {
		if openai.BatchTerminal(r.Batch.Status) || r.Batch.Status == openai.BatchCancelling {
			return false
		}
		r.Batch.Status, r.Batch.CancellingAt = openai.BatchCancelling, &now
		return true
	})
	if err != nil {
		return i.batchUnavailable("cancel", err)
	}
	i.opt.Log.Info("batch cancelling", "batch", rec.Batch.ID)
	return c.JSON(http.StatusOK, rec.Batch)
}

// openaiListBatches handles GET /openai/v1/batches?after=&limit=: the
// caller's batches, newest first, limit (1-100, default 20) after the
// batch id `after`.
func (i *Ingress) openaiListBatches(c echo.Context) error {
	limit := 20
	if s := c.QueryParam("limit"); s != "" {
		n, err := strconv.Atoi(s)
		if err != nil || n < 1 || n > 100 {
			return &openai.Error{Status: http.StatusBadRequest, Param: "limit", Code: "invalid_value",
				Message: fmt.Sprintf("limit %q: want an integer from 1 to 100", s)}
		}
		limit = n
	}
	after := c.QueryParam("after")
	ctx := c.Request().Context()
	kv, err := i.batchKV(ctx)
	if err != nil {
		return i.batchUnavailable("open", err)
	}
	tk := tenantKey(tenantOf(c))
	lister, err := kv.ListKeysFiltered(ctx, tk+".*")
	if err != nil {
		return i.batchUnavailable("list", err)
	}
	var ids []string
	for k := range lister.Keys() {
		ids = append(ids, strings.TrimPrefix(k, tk+"."))
	}
	slices.SortFunc(ids, func(a, b string) int { return strings.Compare(b, a) }) // ids sort by creation time
	if after != "" {
		k := slices.IndexFunc(ids, func(id string) bool { return id < after })
		if k < 0 {
			k = len(ids)
		}
		ids = ids[k:]
	}
	out := openai.BatchList{Object: "list", Data: []openai.Batch{}, HasMore: len(ids) > limit}
	ids = ids[:min(limit, len(ids))]
	for _, id := range ids {
		rec, _, err := i.getBatch(ctx, tk+"."+id)
		if errors.Is(err, errBatchNotFound) {
			continue
		}
		if err != nil {
			return i.batchUnavailable("get", err)
		}
		out.Data = append(out.Data, rec.Batch)
	}
	if n := len(out.Data); n > 0 {
		first, last := out.Data[0].ID, out.Data[n-1].ID
		out.FirstID, out.LastID = &first, &last
	}
	return c.JSON(http.StatusOK, out)
}
