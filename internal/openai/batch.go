package openai

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"net/http"
	"strings"

	"github.com/inferq/inferq/internal/config"
)

// The Batch API's wire: files, batches, and the lines of batch input and
// output files, in OpenAI's shapes.

// Purposes of a file.
const (
	PurposeBatch       = "batch"        // an input file, uploaded by a client
	PurposeBatchOutput = "batch_output" // an output or error file, written by the broker
)

// Batch statuses, in OpenAI's names.
const (
	BatchValidating = "validating"
	BatchFailed     = "failed"
	BatchInProgress = "in_progress"
	BatchFinalizing = "finalizing"
	BatchCompleted  = "completed"
	BatchExpired    = "expired"
	BatchCancelling = "cancelling"
	BatchCancelled  = "cancelled"
)

// BatchTerminal reports whether a batch in status s has ended.
func BatchTerminal(s string) bool {
	return s == BatchFailed || s == BatchCompleted || s == BatchExpired || s == BatchCancelled
}

// CompletionWindow is the only completion window a batch takes.
const CompletionWindow = "24h"

// File is a stored file, as GET /files/{id} shows it.
type File struct {
	ID        string `json:"id"`
	Object    string `json:"object"` // "file"
	Bytes     int64  `json:"bytes"`
	CreatedAt int64  `json:"created_at"`
	Filename  string `json:"filename"`
	Purpose   string `json:"purpose"`
	Status    string `json:"status"` // "processed"
}

// FileList is the answer of GET /files.
type FileList struct {
	Object  string `json:"object"` // "list"
	Data    []File `json:"data"`
	HasMore bool   `json:"has_more"`
}

// FileDeleted is the answer of DELETE /files/{id}.
type FileDeleted struct {
	ID      string `json:"id"`
	Object  string `json:"object"` // "file"
	Deleted bool   `json:"deleted"`
}

// RequestCounts counts a batch's lines.
type RequestCounts struct {
	Total     int `json:"total"`
	Completed int `json:"completed"`
	Failed    int `json:"failed"`
}

// BatchError is one reason a batch failed validation; Line is 1-based.
type BatchError struct {
	Code    string  `json:"code"`
	Message string  `json:"message"`
	Param   *string `json:"param"`
	Line    *int    `json:"line"`
}

// BatchErrors lists why a batch failed.
type BatchErrors struct {
	Object string       `json:"object"` // "list"
	Data   []BatchError `json:"data"`
}

// Batch is a batch as the API shows it. Timestamps are Unix seconds, 0
// (omitted) until the batch gets there.
type Batch struct {
	ID               string            `json:"id"`
	Object           string            `json:"object"` // "batch"
	Endpoint         string            `json:"endpoint"`
	Errors           *BatchErrors      `json:"errors"`
	InputFileID      string            `json:"input_file_id"`
	CompletionWindow string            `json:"completion_window"`
	Status           string            `json:"status"`
	OutputFileID     *string           `json:"output_file_id"`
	ErrorFileID      *string           `json:"error_file_id"`
	CreatedAt        int64             `json:"created_at"`
	InProgressAt     *int64            `json:"in_progress_at"`
	ExpiresAt        *int64            `json:"expires_at"`
	FinalizingAt     *int64            `json:"finalizing_at"`
	CompletedAt      *int64            `json:"completed_at"`
	FailedAt         *int64            `json:"failed_at"`
	ExpiredAt        *int64            `json:"expired_at"`
	CancellingAt     *int64            `json:"cancelling_at"`
	CancelledAt      *int64            `json:"cancelled_at"`
	RequestCounts    RequestCounts     `json:"request_counts"`
	Metadata         map[string]string `json:"metadata"`
	// Webhook is inferq's extension: the batch's completion webhook, when
	// it has one, and where its delivery stands.
	Webhook *BatchWebhook `json:"webhook,omitempty"`
}

// BatchWebhook is a batch's completion webhook: the URL it goes to, and
// its delivery state in the words of a job record's webhook (pending,
// delivered, failed; empty until the batch ends).
type BatchWebhook struct {
	URL       string `json:"url"`
	Status    string `json:"status,omitempty"`
	Attempts  uint32 `json:"attempts,omitempty"`
	LastError string `json:"last_error,omitempty"`
}

// BatchEventType is the webhook event type of a batch that ended in
// status s: batch.completed, batch.failed, batch.cancelled, batch.expired.
func BatchEventType(s string) string { return "batch." + s }

// BatchTenantKey is the first token of a tenant's keys in the batch
// records bucket: a hash, since a tenant name may hold characters a key
// may not.
func BatchTenantKey(tenant string) string {
	sum := sha256.Sum256([]byte(tenant))
	return "t" + hex.EncodeToString(sum[:8])
}

// BatchKey is the key of a tenant's batch id in the batch records bucket.
func BatchKey(tenant, id string) string { return BatchTenantKey(tenant) + "." + id }

// BatchList is the answer of GET /batches.
type BatchList struct {
	Object  string  `json:"object"` // "list"
	Data    []Batch `json:"data"`
	FirstID *string `json:"first_id"`
	LastID  *string `json:"last_id"`
	HasMore bool    `json:"has_more"`
}

// InputLine is one line of a batch input file.
type InputLine struct {
	CustomID string          `json:"custom_id"`
	Method   string          `json:"method"`
	URL      string          `json:"url"`
	Body     json.RawMessage `json:"body"`
}

// OutputLine is one line of a batch output or error file: Response for a
// request that was answered (an error status is in the error file), Error
// for one that never ran (the batch was cancelled or expired first).
type OutputLine struct {
	ID       string       `json:"id"`
	CustomID string       `json:"custom_id"`
	Response *LineAnswer  `json:"response"`
	Error    *LineFailure `json:"error"`
}

// LineAnswer is the HTTP answer a line got.
type LineAnswer struct {
	StatusCode int    `json:"status_code"`
	RequestID  string `json:"request_id"`
	Body       any    `json:"body"`
}

// LineFailure is why a line got no answer.
type LineFailure struct {
	Code    string `json:"code"`
	Message string `json:"message"`
}

// ParseLine reads line n (1-based) of a batch input file for a batch of
// endpoint and checks its body against cfg as Decode does. Its errors are
// BatchErrors naming the line.
func ParseLine(n int, line []byte, endpoint string, cfg *config.Config) (*InputLine, *Request, *BatchError) {
	fail := func(code, param, format string, args ...any) *BatchError {
		e := &BatchError{Code: code, Message: fmt.Sprintf("line %d: ", n) + fmt.Sprintf(format, args...), Line: &n}
		if param != "" {
			e.Param = &param
		}
		return e
	}
	var in InputLine
	dec := json.NewDecoder(bytes.NewReader(line))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&in); err != nil {
		return nil, nil, fail("invalid_json_line", "", "not a JSON object with custom_id, method, url and body: %v", err)
	}
	if dec.More() {
		return nil, nil, fail("invalid_json_line", "", "more than one JSON value on the line")
	}
	if in.CustomID == "" {
		return nil, nil, fail("missing_required_parameter", "custom_id", "custom_id is missing or empty")
	}
	if in.Method != http.MethodPost {
		return nil, nil, fail("invalid_value", "method", "method %q: only POST is supported", in.Method)
	}
	if in.URL != endpoint {
		return nil, nil, fail("mismatched_url", "url", "url %q differs from the batch's endpoint %s", in.URL, endpoint)
	}
	if len(in.Body) == 0 || isNull(in.Body) {
		return nil, nil, fail("missing_required_parameter", "body", "body is missing")
	}
	req, err := Decode(endpoint, in.Body, cfg)
	if err != nil {
		oe, _ := err.(*Error)
		code, param, msg := "invalid_request", "", err.Error()
		if oe != nil {
			code, param, msg = oe.Code, oe.Param, oe.Message
		}
		if param != "" {
			param = "body." + param
		}
		return nil, nil, fail(code, param, "%s", msg)
	}
	if req.Stream {
		return nil, nil, fail("invalid_value", "body.stream", "stream is not supported in a batch")
	}
	return &in, req, nil
}

// SplitLines calls fn for each non-empty line of a JSONL file (numbered
// from 1, blank lines counted) until fn returns false.
func SplitLines(data []byte, fn func(n int, line []byte) bool) {
	n := 0
	for len(data) > 0 {
		n++
		line, rest, _ := bytes.Cut(data, []byte{'\n'})
		data = rest
		line = bytes.TrimSpace(line)
		if len(line) == 0 {
			continue
		}
		if !fn(n, line) {
			return
		}
	}
}

// FileName is the name an uploaded file keeps: its base name, without
// path separators.
func FileName(name string) string {
	if k := strings.LastIndexAny(name, `/\`); k >= 0 {
		name = name[k+1:]
	}
	if name == "" {
		return "upload.jsonl"
	}
	return name
}
