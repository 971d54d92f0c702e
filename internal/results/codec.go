package results

import (
	"bytes"
	"encoding/json"
	"fmt"
	"strconv"
	"time"
	"unicode/utf8"

	"github.com/inferq/inferq/internal/jsonscan"
	"github.com/inferq/inferq/internal/jsonstr"
)

// The KV store's record codec is written by hand: every change notice a
// waiting GET hears carries a record, and encoding/json's reflection on
// records took about 4% of the broker's CPU under load. The JSON is byte for byte what
// json.Marshal writes for Record's struct tags, and the decoder takes exactly
// what json.Unmarshal takes, with the same result (the tests check both
// against encoding/json).

// encodeRecord renders rec as its API JSON: the fields in the order of
// Record's struct tags with their omitempty rules, except the result, which
// comes last and is spliced in as is (it was validated on the way in),
// because encoding/json would compact and HTML-escape it and the bytes must
// come back unchanged.
func encodeRecord(rec *Record) ([]byte, error) {
	// The fixed part of a finished record is about 260 bytes; strings may
	// grow by escaping, which append then handles.
	size := 288 + len(rec.ID) + len(rec.Tenant) + len(rec.Model) + len(rec.Version) + len(rec.Result)
	if rec.Error != nil {
		size += 32 + len(rec.Error.Code) + len(rec.Error.Message)
	}
	if rec.Webhook != nil {
		size += 80 + len(rec.Webhook.URL) + len(rec.Webhook.LastError)
	}
	b := make([]byte, 0, size)
	b = append(b, `{"id":`...)
	b = jsonstr.Append(b, rec.ID)
	if rec.Tenant != "" {
		b = append(b, `,"tenant":`...)
		b = jsonstr.Append(b, rec.Tenant)
	}
	b = append(b, `,"model":`...)
	b = jsonstr.Append(b, rec.Model)
	b = append(b, `,"version":`...)
	b = jsonstr.Append(b, rec.Version)
	b = append(b, `,"status":`...)
	b = jsonstr.Append(b, string(rec.Status))
	var err error
	if b, err = appendTime(b, `,"created_at":`, rec.CreatedAt); err != nil {
		return nil, err
	}
	if rec.StartedAt != nil {
		if b, err = appendTime(b, `,"started_at":`, *rec.StartedAt); err != nil {
			return nil, err
		}
	}
	if rec.FinishedAt != nil {
		if b, err = appendTime(b, `,"finished_at":`, *rec.FinishedAt); err != nil {
			return nil, err
		}
	}
	b = append(b, `,"attempts":`...)
	b = strconv.AppendUint(b, uint64(rec.Attempts), 10)
	if rec.JobsSeq != 0 {
		b = append(b, `,"jobs_seq":`...)
		b = strconv.AppendUint(b, rec.JobsSeq, 10)
	}
	if e := rec.Error; e != nil {
		b = append(b, `,"error":{"code":`...)
		b = jsonstr.Append(b, e.Code)
		b = append(b, `,"message":`...)
		b = jsonstr.Append(b, e.Message)
		b = append(b, '}')
	}
	if w := rec.Webhook; w != nil {
		b = append(b, `,"webhook":{"url":`...)
		b = jsonstr.Append(b, w.URL)
		if w.Status != "" {
			b = append(b, `,"status":`...)
			b = jsonstr.Append(b, string(w.Status))
		}
		if w.Attempts != 0 {
			b = append(b, `,"attempts":`...)
			b = strconv.AppendUint(b, uint64(w.Attempts), 10)
		}
		if w.LastError != "" {
			b = append(b, `,"last_error":`...)
			b = jsonstr.Append(b, w.LastError)
		}
		b = append(b, '}')
	}
	if len(rec.Result) > 0 {
		b = append(b, `,"result":`...)
		b = append(b, rec.Result...)
	}
	return append(b, '}'), nil
}

// appendTime appends key and t as time.Time's MarshalJSON writes it
// (AppendText is the same strict RFC 3339 formatter, without allocating);
// a time that has no RFC 3339 form (a year outside 0..9999) is an error.
func appendTime(b []byte, key string, t time.Time) ([]byte, error) {
	b = append(b, key...)
	b = append(b, '"')
	b, err := t.AppendText(b)
	if err != nil {
		return nil, fmt.Errorf("encode record: %s: %w", key[2:len(key)-2], err)
	}
	return append(b, '"'), nil
}

// decodeRecord parses a stored value. The result's bytes are kept exactly
// as they appear in the value (they share b's array, as the record's raw
// JSON does).
func decodeRecord(b []byte) (*Record, error) {
	rec, ok := scanRecord(b)
	if !ok {
		// Whatever the scanner does not take on itself (malformed JSON, a
		// wrong type, a key that matches a field only case-insensitively
		// or through escapes) goes through encoding/json, whose verdict is
		// the rule the scanner follows.
		var err error
		if rec, err = unmarshalRecord(b); err != nil {
			return nil, err
		}
		rec.StartedAt = utcPtr(rec.StartedAt)
		rec.FinishedAt = utcPtr(rec.FinishedAt)
	}
	if !rec.Status.Valid() {
		return nil, fmt.Errorf("%w: status %q", errCorrupt, rec.Status)
	}
	rec.CreatedAt = rec.CreatedAt.UTC()
	rec.raw = b
	return rec, nil
}

// unmarshalRecord is the reflective decoder, for values the scanner leaves.
func unmarshalRecord(b []byte) (*Record, error) {
	var rec Record
	if err := json.Unmarshal(b, &rec); err != nil {
		return nil, fmt.Errorf("%w: %w", errCorrupt, err)
	}
	return &rec, nil
}

// recordKeys are Record's JSON names: a key that equals one of them only
// case-insensitively still names the field for encoding/json, so the scanner
// leaves such a value to it.
var recordKeys = []string{"id", "tenant", "model", "version", "status", "created_at", "started_at",
	"finished_at", "attempts", "jobs_seq", "error", "result", "webhook"}

// scanRecord decodes b as json.Unmarshal would into a Record, or reports
// false when b is not a plain record object (then encoding/json decides).
// It never panics and allocates only what the record keeps.
func scanRecord(b []byte) (*Record, bool) {
	s := scanner{Scanner: jsonscan.Scanner{B: b}}
	s.Space()
	if !s.Take('{') {
		return nil, false
	}
	rec := new(Record)
	s.Space()
	if s.Take('}') {
		return rec, s.End()
	}
	for {
		s.Space()
		ks := s.I
		if !s.Str() {
			return nil, false
		}
		key, plainKey := b[ks+1:s.I-1], !s.Backslash && !s.High
		s.Space()
		if !s.Take(':') {
			return nil, false
		}
		s.Space()
		if !s.field(rec, key, plainKey) {
			return nil, false
		}
		s.Space()
		if s.Take(',') {
			continue
		}
		if s.Take('}') {
			return rec, s.End()
		}
		return nil, false
	}
}

// scanner walks a record; times holds the record's two optional times so
// that one allocation serves both.
type scanner struct {
	jsonscan.Scanner
	times *[2]time.Time
}

// field decodes the value of key into rec, as encoding/json would; false
// when it cannot say. plainKey: the key has no escape and no byte outside
// ASCII.
func (s *scanner) field(rec *Record, key []byte, plainKey bool) bool {
	switch string(key) {
	case "id":
		return s.string(&rec.ID)
	case "tenant":
		return s.string(&rec.Tenant)
	case "model":
		return s.string(&rec.Model)
	case "version":
		return s.string(&rec.Version)
	case "status":
		return s.status(&rec.Status)
	case "created_at":
		return s.time(&rec.CreatedAt)
	case "started_at":
		return s.timePtr(&rec.StartedAt, 0)
	case "finished_at":
		return s.timePtr(&rec.FinishedAt, 1)
	case "attempts":
		n, set, ok := s.uint(32)
		if set {
			rec.Attempts = uint32(n)
		}
		return ok
	case "jobs_seq":
		n, set, ok := s.uint(64)
		if set {
			rec.JobsSeq = n
		}
		return ok
	case "error":
		return decodeSub(s, &rec.Error)
	case "webhook":
		return decodeSub(s, &rec.Webhook)
	case "result":
		start := s.I
		if !s.Skip(1) {
			return false
		}
		// json.RawMessage takes any value, null too, byte for byte.
		rec.Result = json.RawMessage(s.B[start:s.I:s.I])
		return true
	}
	// An unknown key is skipped, unless encoding/json would match it to a
	// field anyway (it folds case, and unescapes).
	if !plainKey {
		return false
	}
	for _, k := range recordKeys {
		if bytes.EqualFold(key, []byte(k)) {
			return false
		}
	}
	return s.Skip(1)
}

// string decodes a JSON string or null (which leaves dst alone).
func (s *scanner) string(dst *string) bool {
	tok, plain, ok := s.strOrNull()
	switch {
	case !ok || tok == nil:
		return ok
	case plain:
		*dst = string(tok[1 : len(tok)-1])
		return true
	}
	return json.Unmarshal(tok, dst) == nil
}

// statuses are the known statuses, which status takes without allocating.
var statuses = [...]Status{Queued, Running, Succeeded, Failed, Cancelled, Expired}

// status is string for the status.
func (s *scanner) status(dst *Status) bool {
	tok, plain, ok := s.strOrNull()
	switch {
	case !ok || tok == nil:
		return ok
	case plain:
		v := tok[1 : len(tok)-1]
		for _, st := range statuses {
			if string(v) == string(st) {
				*dst = st
				return true
			}
		}
		*dst = Status(v)
		return true
	}
	var v string
	if json.Unmarshal(tok, &v) != nil {
		return false
	}
	*dst = Status(v)
	return true
}

// strOrNull scans a string, returned with its quotes, or null, returned as
// nil; anything else is false. plain: the string has no escape and is valid
// UTF-8, so encoding/json would take its bytes as they are.
func (s *scanner) strOrNull() (tok []byte, plain, ok bool) {
	start := s.I
	switch s.Peek() {
	case '"':
		if !s.Str() {
			return nil, false, false
		}
		tok = s.B[start:s.I]
		return tok, !s.Backslash && (!s.High || utf8.Valid(tok)), true
	case 'n':
		return nil, false, s.Lit("null")
	}
	return nil, false, false
}

// time decodes created_at: time.Time.UnmarshalJSON on the token, as
// encoding/json calls it (null leaves the time alone).
func (s *scanner) time(dst *time.Time) bool {
	tok, _, ok := s.strOrNull()
	if !ok || tok == nil {
		return ok
	}
	return dst.UnmarshalJSON(tok) == nil
}

// timePtr decodes started_at (slot 0) and finished_at (slot 1), in UTC as
// decodeRecord keeps them; null sets nil. The two share one allocation.
func (s *scanner) timePtr(dst **time.Time, slot int) bool {
	tok, _, ok := s.strOrNull()
	if !ok {
		return false
	}
	if tok == nil {
		*dst = nil
		return true
	}
	var t time.Time
	if t.UnmarshalJSON(tok) != nil {
		return false
	}
	if s.times == nil {
		s.times = new([2]time.Time)
	}
	s.times[slot] = t.UTC()
	*dst = &s.times[slot]
	return true
}

// uint decodes an unsigned integer of the given bits. set is false for
// null, which leaves the field alone. What encoding/json's
// strconv.ParseUint refuses (a sign, a fraction, an exponent, overflow) is
// not ok.
func (s *scanner) uint(bits int) (n uint64, set, ok bool) {
	if s.Peek() == 'n' {
		return 0, false, s.Lit("null")
	}
	start := s.I
	if !s.Num() {
		return 0, false, false
	}
	limit := uint64(1)<<bits - 1
	for _, c := range s.B[start:s.I] {
		if !jsonscan.IsDigit(c) {
			return 0, false, false
		}
		d := uint64(c - '0')
		if n > (limit-d)/10 {
			return 0, false, false
		}
		n = n*10 + d
	}
	return n, true, true
}

// decodeSub decodes an object field (error, webhook) with encoding/json:
// they are small and rare, and have their own rules (null sets nil; a
// repeated key fills the same struct).
func decodeSub[T any](s *scanner, dst **T) bool {
	start := s.I
	if !s.Skip(1) {
		return false
	}
	return json.Unmarshal(s.B[start:s.I], dst) == nil
}
