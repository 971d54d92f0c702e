package results

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"reflect"
	"strings"
	"testing"
	"time"
)

// encodeRecordJSON is the record encoder as it was before the hand-written
// one: json.Marshal with the result spliced in at the end. It is the
// reference the new encoder must match byte for byte.
func encodeRecordJSON(rec *Record) ([]byte, error) {
	r := *rec
	r.Result = nil
	b, err := json.Marshal(&r)
	if err != nil {
		return nil, fmt.Errorf("encode record: %w", err)
	}
	if len(rec.Result) == 0 {
		return b, nil
	}
	out := make([]byte, 0, len(b)+len(rec.Result)+16)
	out = append(out, b[:len(b)-1]...)
	out = append(out, `,"result":`...)
	out = append(out, rec.Result...)
	return append(out, '}'), nil
}

// decodeRecordJSON is the record decoder as it was: json.Unmarshal. The
// new decoder must accept what it accepts, with an equal record, and refuse
// what it refuses.
func decodeRecordJSON(b []byte) (*Record, error) {
	var rec Record
	if err := json.Unmarshal(b, &rec); err != nil {
		return nil, fmt.Errorf("%w: %w", errCorrupt, err)
	}
	if !rec.Status.Valid() {
		return nil, fmt.Errorf("%w: status %q", errCorrupt, rec.Status)
	}
	rec.CreatedAt = rec.CreatedAt.UTC()
	rec.StartedAt = utcPtr(rec.StartedAt)
	rec.FinishedAt = utcPtr(rec.FinishedAt)
	rec.raw = b
	return &rec, nil
}

func tp(t time.Time) *time.Time { return &t }

// codecRecords covers every field set and unset, escapes, unicode and a
// big result.
func codecRecords() []struct {
	name string
	rec  Record
} {
	created := time.Date(2026, 12, 1, 10, 11, 12, 123456789, time.UTC)
	started := created.Add(1500 * time.Microsecond)
	finished := started.Add(2 * time.Millisecond)
	big := `{"model_name":"simple","outputs":[{"name":"OUTPUT0","datatype":"FP32","shape":[1,4096],"data":[` +
		strings.Repeat("1.5,", 4095) + `2]}]}`
	return []struct {
		name string
		rec  Record
	}{
		{"zero", Record{}},
		{"queued", Record{ID: "01JQ", Model: "simple", Version: "1", Status: Queued, CreatedAt: created}},
		{"simple succeeded", Record{ID: "01JQ7Z3XK9M2B4C6D8E0F1G2H3", Model: "simple", Version: "1", Status: Succeeded,
			CreatedAt: created, StartedAt: &started, FinishedAt: &finished, Attempts: 1, JobsSeq: 42,
			Result: json.RawMessage(`{"model_name":"simple","model_version":"1","id":"01JQ7Z3XK9M2B4C6D8E0F1G2H3","outputs":[{"name":"OUTPUT0","shape":[1,16],"datatype":"INT32","data":[2,4,6,8]}]}`)}},
		{"every field", Record{ID: "a.b-c_d=e/f", Tenant: "acme", Model: "m", Version: "7", Status: Failed,
			CreatedAt: created, StartedAt: &started, FinishedAt: &finished, Attempts: 4294967295,
			JobsSeq: 18446744073709551615, Error: &Error{Code: "runner_error", Message: "boom"},
			Result:  json.RawMessage(`null`),
			Webhook: &Webhook{URL: "https://example.com/hook?a=1&b=<2>", Status: WebhookFailed, Attempts: 3, LastError: "HTTP 500"}}},
		{"escapes", Record{ID: "x", Tenant: "t\"en\\ant\n\t\r\b\f\x00\x1f", Model: "<script>&amp;</script>",
			Version: "\u2028\u2029", Status: Running, CreatedAt: created, StartedAt: &started,
			Error: &Error{Code: "", Message: "line\nbreak \"quoted\" <b>"}}},
		{"unicode", Record{ID: "u", Model: "modèle-✓-😀", Version: "版本", Status: Cancelled, CreatedAt: created,
			FinishedAt: &finished, Attempts: 2, Error: &Error{Code: "cancelled", Message: "é"}}},
		{"invalid utf8", Record{ID: "v", Model: "bad \xff\xfe utf8", Version: "\xed\xa0\x80", Status: Expired,
			CreatedAt: created}},
		{"empty webhook", Record{ID: "w", Model: "m", Status: Queued, CreatedAt: created, Webhook: &Webhook{}}},
		{"pending webhook", Record{ID: "w", Model: "m", Status: Succeeded, CreatedAt: created, Attempts: 1,
			Webhook: &Webhook{URL: "http://h/", Status: WebhookPending}, Result: json.RawMessage(`{"a": [1, 2]}`)}},
		{"empty error", Record{ID: "e", Model: "m", Status: Failed, CreatedAt: created, Error: &Error{}}},
		{"big result", Record{ID: "b", Model: "simple", Status: Succeeded, CreatedAt: created, Attempts: 1,
			Result: json.RawMessage(big)}},
		{"zero time pointers", Record{ID: "z", Model: "m", Status: Running, StartedAt: &time.Time{},
			FinishedAt: tp(time.Date(9999, 12, 31, 23, 59, 59, 999999999, time.UTC))}},
		{"whole seconds", Record{ID: "s", Model: "m", Status: Running, CreatedAt: time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC),
			StartedAt: tp(time.Date(2026, 1, 1, 0, 0, 0, 100000000, time.UTC))}},
		{"not utc", Record{ID: "l", Model: "m", Status: Running,
			CreatedAt: time.Date(2026, 1, 1, 0, 0, 0, 5, time.FixedZone("x", -(3*3600+30*60)))}},
	}
}

// TestEncodeRecordMatchesJSON: the hand-written encoder writes what
// json.Marshal wrote, byte for byte, and the decoder reads it back without
// falling back to encoding/json.
func TestEncodeRecordMatchesJSON(t *testing.T) {
	for _, tc := range codecRecords() {
		t.Run(tc.name, func(t *testing.T) {
			want, err := encodeRecordJSON(&tc.rec)
			if err != nil {
				t.Fatal(err)
			}
			got, err := encodeRecord(&tc.rec)
			if err != nil {
				t.Fatal(err)
			}
			if !bytes.Equal(got, want) {
				t.Fatalf("encodeRecord:\n got %s\nwant %s", got, want)
			}
			if _, ok := scanRecord(got); !ok {
				t.Fatalf("the scanner leaves its own encoding %s to encoding/json", got)
			}
			if tc.rec.Status == "" {
				return // not a valid record: decoding refuses it (below)
			}
			rec, err := decodeRecord(got)
			if err != nil {
				t.Fatal(err)
			}
			ref, err := decodeRecordJSON(want)
			if err != nil {
				t.Fatal(err)
			}
			if !reflect.DeepEqual(rec, ref) {
				t.Fatalf("decodeRecord = %+v, encoding/json = %+v", rec, ref)
			}
			again, err := encodeRecord(rec)
			if err != nil {
				t.Fatal(err)
			}
			if tc.rec.CreatedAt.Location() != time.UTC || bytes.Contains(got, []byte(`\ufffd`)) {
				return // decoding makes times UTC, and U+FFFD is then written as is
			}
			if !bytes.Equal(again, got) {
				t.Fatalf("round trip:\n got %s\nwant %s", again, got)
			}
		})
	}
}

// TestEncodeRecordBadTime: a time with no RFC 3339 form is an error, as it
// was with json.Marshal.
func TestEncodeRecordBadTime(t *testing.T) {
	for _, rec := range []*Record{
		{ID: "y", Status: Queued, CreatedAt: time.Date(10000, 1, 1, 0, 0, 0, 0, time.UTC)},
		{ID: "y", Status: Queued, StartedAt: tp(time.Date(-1, 1, 1, 0, 0, 0, 0, time.UTC))},
		{ID: "y", Status: Queued, FinishedAt: tp(time.Date(2026, 1, 1, 0, 0, 0, 0, time.FixedZone("far", 24*3600)))},
	} {
		_, refErr := encodeRecordJSON(rec)
		_, err := encodeRecord(rec)
		if refErr == nil || err == nil {
			t.Fatalf("record %+v: encodeRecord error %v, json.Marshal error %v; want both", rec, err, refErr)
		}
	}
}

// decodeCases are stored values the decoder must treat as encoding/json
// does: odd but valid forms, and every way of being wrong.
var decodeCases = []string{
	`{"id":"a","model":"m","version":"1","status":"queued","created_at":"2026-12-01T10:11:12.5Z","attempts":0}`,
	` {"status" : "running" , "id":"a"} `,
	"\t\r\n{\"status\":\"running\"}\n",
	`{}`,
	`{"status":"running","unknown":{"x":[1,2,{"y":null}],"z":"\u00e9"},"other":-1.5e+10}`,
	`{"status":"running","ID":"upper"}`,
	`{"status":"running","Id":"a","id":"b"}`,
	`{"status":"running","id":"b","iD":"a"}`,
	`{"status":"running","\u0069d":"escaped key"}`,
	`{"ſtatus":"running"}`,
	`{"status":"running","ıd":"dotless"}`,
	`{"status":"running","créé":1}`,
	`{"status":"running","id":"a","id":"b"}`,
	`{"status":"running","id":null}`,
	`{"status":"running","id":"a","id":null}`,
	`{"status":"running","id":1}`,
	`{"status":"running","id":true}`,
	`{"status":"running","id":{}}`,
	`{"status":"running","id":[]}`,
	`{"status":"running","id":"esc\"aped\\ \/ \b\f\n\r\t \u00e9 \ud83d\ude00 \ud800 \u2028"}`,
	"{\"status\":\"running\",\"id\":\"bad \xff utf8\"}",
	"{\"status\":\"running\",\"id\":\"ctl \x01\"}",
	`{"status":"running","id":"bad \x escape"}`,
	`{"status":"running","id":"short \u12"}`,
	`{"status":"running","id":"unterminated}`,
	`{"status":null}`,
	`{"status":"bogus"}`,
	`{"status":"runn\u0069ng"}`,
	`{"status":"RUNNING"}`,
	`{"status":1}`,
	`{"status":"running","attempts":1}`,
	`{"status":"running","attempts":4294967295}`,
	`{"status":"running","attempts":4294967296}`,
	`{"status":"running","attempts":-1}`,
	`{"status":"running","attempts":-0}`,
	`{"status":"running","attempts":1.0}`,
	`{"status":"running","attempts":1e2}`,
	`{"status":"running","attempts":01}`,
	`{"status":"running","attempts":"1"}`,
	`{"status":"running","attempts":null}`,
	`{"status":"running","attempts":2,"attempts":null}`,
	`{"status":"running","attempts":-}`,
	`{"status":"running","attempts":1.}`,
	`{"status":"running","attempts":1e}`,
	`{"status":"running","jobs_seq":18446744073709551615}`,
	`{"status":"running","jobs_seq":18446744073709551616}`,
	`{"status":"running","jobs_seq":9223372036854775808}`,
	`{"status":"running","created_at":"2026-12-01T10:11:12Z"}`,
	`{"status":"running","created_at":"2026-12-01T10:11:12.123456789+05:30"}`,
	`{"status":"running","created_at":"2026-12-01T10:11:12.1234567891Z"}`,
	`{"status":"running","created_at":"2026-12-01 10:11:12Z"}`,
	`{"status":"running","created_at":"2026-12-01T10:11:12z"}`,
	`{"status":"running","created_at":"2026-12-01T10:11:12+24:00"}`,
	`{"status":"running","created_at":"2026-12-01T10:11:12\u005a"}`,
	`{"status":"running","created_at":null}`,
	`{"status":"running","created_at":"2026-12-01T10:11:12Z","created_at":null}`,
	`{"status":"running","created_at":1}`,
	`{"status":"running","created_at":{}}`,
	`{"status":"running","created_at":""}`,
	`{"status":"running","started_at":"2026-12-01T10:11:12Z","started_at":null}`,
	`{"status":"running","started_at":null,"finished_at":"0000-01-01T00:00:00Z"}`,
	`{"status":"running","finished_at":"9999-12-31T23:59:59.999999999-23:59"}`,
	`{"status":"running","started_at":[]}`,
	`{"status":"failed","error":{"code":"c","message":"m"}}`,
	`{"status":"failed","error":{"code":"c"},"error":{"message":"m"}}`,
	`{"status":"failed","error":{"code":"c"},"error":null}`,
	`{"status":"failed","error":{"CODE":"c","extra":[1]}}`,
	`{"status":"failed","error":"text"}`,
	`{"status":"failed","error":{"code":1}}`,
	`{"status":"failed","error":{"code":"c",}}`,
	`{"status":"succeeded","webhook":{"url":"u","status":"pending","attempts":2,"last_error":"e"}}`,
	`{"status":"succeeded","webhook":{"url":"u","attempts":-2}}`,
	`{"status":"succeeded","webhook":null}`,
	`{"status":"succeeded","result":{"a": [1, 2], "b": {"c": "d"}}}`,
	`{"status":"succeeded","result":null}`,
	`{"status":"succeeded","result":"s"}`,
	`{"status":"succeeded","result":12.5e-3}`,
	`{"status":"succeeded","result":[]}`,
	`{"status":"succeeded","result":{} }`,
	`{"status":"succeeded","result":[1,2,]}`,
	`{"status":"succeeded","result":[1 2]}`,
	`{"status":"succeeded","result":{"a" 1}}`,
	`{"status":"succeeded","result":{"a":1]}`,
	`{"status":"succeeded","result":[1}`,
	`{"status":"succeeded","result":{1:2}}`,
	`{"status":"succeeded","result":tru}`,
	`{"status":"succeeded","result":nul}`,
	`{"status":"succeeded","result":truex}`,
	`{"status":"succeeded","result":+1}`,
	`{"status":"succeeded","result":.5}`,
	`{"status":"succeeded","result":"a","result":[1]}`,
	`{"status":"succeeded","raw":"x"}`,
	`{"status":"running",}`,
	`{"status":"running"`,
	`{"status":"running"}}`,
	`{"status":"running"} x`,
	`{"status":"running"}{}`,
	`{"status" "running"}`,
	`{status:"running"}`,
	`{,"status":"running"}`,
	`{"status":"running",,"id":"a"}`,
	`[]`,
	`null`,
	`"status"`,
	`1`,
	``,
	` `,
	`{`,
	"\xef\xbb\xbf{\"status\":\"running\"}",
	"{\"status\":\"running\"}\x00",
	"{\"status\":\"running\"\f}",
}

// TestDecodeRecordMatchesJSON: on every case, the decoder accepts exactly
// what encoding/json accepts, with an equal record.
func TestDecodeRecordMatchesJSON(t *testing.T) {
	for _, in := range decodeCases {
		checkDecode(t, []byte(in))
	}
}

// TestDecodeRecordDepth: encoding/json refuses a value nested deeper than
// 10000 (the record object counts); so does the scanner, without recursing.
func TestDecodeRecordDepth(t *testing.T) {
	for _, depth := range []int{9998, 9999, 10000} {
		for _, open := range []string{"[", `{"a":`} {
			closeWith := "]"
			if open != "[" {
				closeWith = "}"
			}
			for _, field := range []string{"result", "unknown", "error"} {
				in := `{"status":"running","` + field + `":` + strings.Repeat(open, depth) + "1" + strings.Repeat(closeWith, depth) + `}`
				_, refErr := decodeRecordJSON([]byte(in))
				if field == "result" && (refErr == nil) != (depth < 10000) {
					t.Fatalf("encoding/json at depth %d (%s): %v", depth, open, refErr)
				}
				checkDecode(t, []byte(in))
				if _, ok := scanRecord([]byte(in)); field == "result" && ok != (depth < 10000) {
					t.Fatalf("scanRecord at depth %d (%s): %v", depth, open, ok)
				}
			}
		}
	}
}

// checkDecode compares decodeRecord with encoding/json on in, and checks
// that what the scanner takes on itself is right.
func checkDecode(t *testing.T, in []byte) {
	t.Helper()
	want, wantErr := decodeRecordJSON(in)
	got, err := decodeRecord(in)
	short := in
	if len(short) > 200 {
		short = short[:200]
	}
	switch {
	case (err == nil) != (wantErr == nil):
		t.Fatalf("decodeRecord(%q): error %v, encoding/json error %v", short, err, wantErr)
	case err != nil:
		if !errors.Is(err, errCorrupt) {
			t.Fatalf("decodeRecord(%q): error %v is not errCorrupt", short, err)
		}
	case !reflect.DeepEqual(got, want):
		t.Fatalf("decodeRecord(%q) = %+v, encoding/json = %+v", short, got, want)
	}
	if rec, ok := scanRecord(in); ok {
		if wantErr != nil && rec.Status.Valid() {
			t.Fatalf("scanRecord(%q) accepted what encoding/json refuses: %v", short, wantErr)
		}
	}
}

// FuzzDecodeRecord: for any stored value, decodeRecord agrees with
// encoding/json (same verdict, equal record) and never panics; whatever it
// accepts survives encode and decode unchanged.
func FuzzDecodeRecord(f *testing.F) {
	for _, tc := range codecRecords() {
		b, err := encodeRecordJSON(&tc.rec)
		if err != nil {
			f.Fatal(err)
		}
		f.Add(b)
	}
	for _, in := range decodeCases {
		f.Add([]byte(in))
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		checkDecode(t, b)
		rec, err := decodeRecord(b)
		if err != nil {
			return
		}
		again, err := encodeRecord(rec)
		if err != nil {
			return // e.g. a time whose offset has no RFC 3339 form
		}
		rec2, err := decodeRecord(again)
		if err != nil {
			t.Fatalf("re-encoded record %q does not decode: %v", again, err)
		}
		rec.raw, rec2.raw = nil, nil
		if !reflect.DeepEqual(rec, rec2) {
			t.Fatalf("round trip changed the record: %+v -> %+v", rec, rec2)
		}
	})
}

// FuzzEncodeRecord: for any strings and numbers, the encoder writes what
// json.Marshal writes.
func FuzzEncodeRecord(f *testing.F) {
	f.Add("01JQ", "acme", "simple", "1", "succeeded", int64(1764583872123456789), uint32(1), uint64(42), "c", "m", "u", "e", true, true)
	f.Add("", "", "", "", "", int64(0), uint32(0), uint64(0), "", "", "", "", false, false)
	f.Add("<&>", "\u2028", "\xff", "\"\\", "\x00", int64(-62135596800000000), uint32(7), uint64(1<<63), "\n", "é", "", "😀", true, false)
	f.Fuzz(func(t *testing.T, id, tenant, model, version, status string, unixNano int64, attempts uint32, seq uint64,
		code, msg, url, lastErr string, withErr, withHook bool) {
		at := time.Unix(0, unixNano).UTC()
		rec := &Record{ID: id, Tenant: tenant, Model: model, Version: version, Status: Status(status), CreatedAt: at,
			StartedAt: &at, Attempts: attempts, JobsSeq: seq, Result: json.RawMessage(`{"x":1}`)}
		if withErr {
			rec.Error = &Error{Code: code, Message: msg}
		}
		if withHook {
			rec.Webhook = &Webhook{URL: url, Status: WebhookStatus(code), Attempts: attempts, LastError: lastErr}
		}
		want, wantErr := encodeRecordJSON(rec)
		got, err := encodeRecord(rec)
		if (err == nil) != (wantErr == nil) || !bytes.Equal(got, want) {
			t.Fatalf("encodeRecord = %s, %v; json.Marshal = %s, %v", got, err, want, wantErr)
		}
	})
}

// BenchmarkRecordCodec compares encoding/json with the hand-written codec on
// a typical `simple` job's finished record.
func BenchmarkRecordCodec(b *testing.B) {
	created := time.Date(2026, 12, 1, 10, 11, 12, 123456789, time.UTC)
	started, finished := created.Add(1234567*time.Nanosecond), created.Add(3456789*time.Nanosecond)
	rec := &Record{ID: "01JQ7Z3XK9M2B4C6D8E0F1G2H3", Model: "simple", Version: "1", Status: Succeeded,
		CreatedAt: created, StartedAt: &started, FinishedAt: &finished, Attempts: 1, JobsSeq: 123456,
		Result: json.RawMessage(`{"model_name":"simple","model_version":"1","id":"01JQ7Z3XK9M2B4C6D8E0F1G2H3","outputs":[{"name":"OUTPUT0","shape":[1,4],"datatype":"INT32","data":[2,4,6,8]}]}`)}
	data, err := encodeRecord(rec)
	if err != nil {
		b.Fatal(err)
	}
	b.Logf("record: %d bytes, result %d bytes", len(data), len(rec.Result))
	for _, bc := range []struct {
		name string
		fn   func() error
	}{
		{"encode/json", func() error { _, err := encodeRecordJSON(rec); return err }},
		{"encode/append", func() error { _, err := encodeRecord(rec); return err }},
		{"decode/json", func() error { _, err := decodeRecordJSON(data); return err }},
		{"decode/scan", func() error { _, err := decodeRecord(data); return err }},
	} {
		b.Run(bc.name, func(b *testing.B) {
			b.ReportAllocs()
			for b.Loop() {
				if err := bc.fn(); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}
