package lifecycle_test

import (
	"context"
	"encoding/json"
	"strconv"
	"strings"
	"testing"

	"github.com/nats-io/nats.go"

	"github.com/inferq/inferq/internal/lifecycle"
	"github.com/inferq/inferq/pkg/jetstream"
	"github.com/inferq/inferq/schemas/inferqpb"
)

// legacyToken is the token chunk as the worker encoded it before this
// package existed (json.Marshal of this struct): the bytes on NATS must
// stay the same.
type legacyToken struct {
	Job     string `json:"job"`
	Seq     uint64 `json:"seq"`
	Text    string `json:"text"`
	TokenID int64  `json:"token_id"`
	Final   bool   `json:"final"`
}

var tokenCases = []struct {
	name string
	c    lifecycle.TokenChunk
}{
	{"plain", lifecycle.TokenChunk{Job: "01JB4Z8Q1XK3", Seq: 1, Text: "Hello", TokenID: 15496}},
	{"final", lifecycle.TokenChunk{Job: "j", Seq: 18446744073709551615, Text: "", TokenID: -9223372036854775808, Final: true}},
	{"escapes", lifecycle.TokenChunk{Job: "j", Seq: 2, Text: "a\"b\\c\nd\re\tf\bg\fh\x00i\x1fj\x7fk/l"}},
	{"html", lifecycle.TokenChunk{Job: "j", Seq: 3, Text: "<script>&amp;</script>"}},
	{"unicode", lifecycle.TokenChunk{Job: "j", Seq: 4, Text: "héllo 世界 🙂 \u2028\u2029 \u00a0"}},
	{"invalid utf-8", lifecycle.TokenChunk{Job: "j\xff", Seq: 5, Text: "a\xc3b\xed\xa0\x80c\xf0\x9f"}},
	{"negative id", lifecycle.TokenChunk{Job: "j", Seq: 6, Text: " ", TokenID: -1}},
}

func TestTokenChunkWire(t *testing.T) {
	// One literal, so that a change in encoding/json would show too.
	got := lifecycle.EncodeTokenChunk(lifecycle.TokenChunk{Job: "j1", Seq: 2, Text: "<a>\n", TokenID: 42, Final: true})
	if want := `{"job":"j1","seq":2,"text":"\u003ca\u003e\n","token_id":42,"final":true}`; string(got) != want {
		t.Fatalf("got  %s\nwant %s", got, want)
	}
	for _, tc := range tokenCases {
		t.Run(tc.name, func(t *testing.T) {
			c := tc.c
			want, err := json.Marshal(legacyToken(c))
			if err != nil {
				t.Fatal(err)
			}
			if got := lifecycle.EncodeTokenChunk(c); string(got) != string(want) {
				t.Fatalf("got  %s\nwant %s", got, want)
			}
			if got := lifecycle.AppendTokenChunk([]byte("x"), c); string(got) != "x"+string(want) {
				t.Fatalf("append: %s", got)
			}
		})
	}
}

func TestDecodeTokenChunk(t *testing.T) {
	for _, tc := range tokenCases {
		t.Run(tc.name, func(t *testing.T) {
			data := lifecycle.EncodeTokenChunk(tc.c)
			got, err := lifecycle.DecodeTokenChunk(data)
			var want lifecycle.TokenChunk
			if jerr := json.Unmarshal(data, &want); jerr != nil || err != nil || got != want {
				t.Fatalf("got %+v, %v; encoding/json %+v, %v", got, err, want, jerr)
			}
			if !strings.ContainsRune(tc.c.Job+tc.c.Text, '\uFFFD') && tc.name != "invalid utf-8" && got != tc.c {
				t.Fatalf("round trip: %+v != %+v", got, tc.c)
			}
		})
	}
	others := []struct {
		name string
		in   string
		want lifecycle.TokenChunk
	}{
		{"spaces", ` { "job" : "j", "seq" : 1, "text" : "a", "token_id" : 2, "final" : true } `, lifecycle.TokenChunk{Job: "j", Seq: 1, Text: "a", TokenID: 2, Final: true}},
		{"other order", `{"seq":1,"job":"j","final":false,"text":"a"}`, lifecycle.TokenChunk{Job: "j", Seq: 1, Text: "a"}},
		{"unknown field", `{"job":"j","seq":1,"text":"a","token_id":2,"final":true,"logprob":-0.5}`, lifecycle.TokenChunk{Job: "j", Seq: 1, Text: "a", TokenID: 2, Final: true}},
		{"surrogate pair", `{"job":"j","seq":1,"text":"\ud83d\ude42\u00e9\/","token_id":0,"final":false}`, lifecycle.TokenChunk{Job: "j", Seq: 1, Text: "🙂é/"}},
		{"lone surrogate", `{"job":"j","seq":1,"text":"\ud83dx","token_id":0,"final":false}`, lifecycle.TokenChunk{Job: "j", Seq: 1, Text: "\uFFFDx"}},
		{"trailing newline", "{\"job\":\"j\",\"seq\":1,\"text\":\"\",\"token_id\":0,\"final\":false}\n", lifecycle.TokenChunk{Job: "j", Seq: 1}},
	}
	for _, tc := range others {
		t.Run(tc.name, func(t *testing.T) {
			got, err := lifecycle.DecodeTokenChunk([]byte(tc.in))
			if err != nil || got != tc.want {
				t.Fatalf("got %+v, %v; want %+v", got, err, tc.want)
			}
		})
	}
	bad := []string{
		``, `{`, `null x`, `[]`, `{"job":"j","seq":-1,"text":"","token_id":0,"final":false}`,
		`{"job":"j","seq":01,"text":"","token_id":0,"final":false}`,
		`{"job":"j","seq":1.5,"text":"","token_id":0,"final":false}`,
		`{"job":"j","seq":18446744073709551616,"text":"","token_id":0,"final":false}`,
		`{"job":"j","seq":1,"text":"","token_id":9223372036854775808,"final":false}`,
		`{"job":"j","seq":1,"text":"a` + "\n" + `","token_id":0,"final":false}`,
		`{"job":"j","seq":1,"text":"\x","token_id":0,"final":false}`,
		`{"job":"j","seq":1,"text":"\u12","token_id":0,"final":false}`,
		`{"job":"j","seq":1,"text":"","token_id":0,"final":false}x`,
		`{"job":"j","seq":1,"text":"","token_id":0,"final":nope}`,
	}
	for _, in := range bad {
		if got, err := lifecycle.DecodeTokenChunk([]byte(in)); err == nil {
			t.Errorf("%q decoded to %+v", in, got)
		}
	}
}

func TestTokenMsg(t *testing.T) {
	c := lifecycle.TokenChunkOf(&inferqpb.TokenChunk{JobId: "j1", Seq: 3, Text: "hi", TokenId: 7, Final: true})
	msg := lifecycle.TokenMsg(context.Background(), jetstream.DefaultTopology(), "acme", 2, c)
	if msg.Subject != "inferq.tokens.acme.j1" || string(msg.Data) != `{"job":"j1","seq":3,"text":"hi","token_id":7,"final":true}` {
		t.Fatalf("subject %q data %s", msg.Subject, msg.Data)
	}
	if msg.Header.Get("Inferq-Seq") != "3" || msg.Header.Get("Inferq-Attempt") != "2" {
		t.Fatalf("headers %v", msg.Header)
	}
	if a := lifecycle.TokenAttempt(msg.Header); a != 2 {
		t.Fatalf("attempt %d", a)
	}
	if s, ok := lifecycle.TokenSeq(msg.Header); !ok || s != 3 {
		t.Fatalf("seq %d %v", s, ok)
	}
	msg.Header.Set("Inferq-Attempt", "x")
	msg.Header.Del("Inferq-Seq")
	if a := lifecycle.TokenAttempt(msg.Header); a != 0 {
		t.Fatalf("bad attempt read as %d", a)
	}
	if _, ok := lifecycle.TokenSeq(msg.Header); ok {
		t.Fatal("missing seq read")
	}
}

// FuzzTokenChunk checks that the decoder reads any input exactly as
// encoding/json does, never panics, and that what it reads encodes back
// to encoding/json's bytes and decodes to itself.
func FuzzTokenChunk(f *testing.F) {
	for _, tc := range tokenCases {
		f.Add(lifecycle.EncodeTokenChunk(tc.c))
	}
	f.Add([]byte(`{"job":"j","seq":1,"text":"\ud83d\ude42\ud800\u0041","token_id":-0,"final":true}`))
	f.Add([]byte(`{"JOB":"j","seq":1,"job":"k"}`))
	f.Add([]byte(`{"job":"j","seq":1,"text":"","token_id":0,"final":false} `))
	f.Fuzz(func(t *testing.T, data []byte) {
		got, err := lifecycle.DecodeTokenChunk(data)
		var want lifecycle.TokenChunk
		jerr := json.Unmarshal(data, &want)
		if (err == nil) != (jerr == nil) {
			t.Fatalf("%q: error %v, encoding/json %v", data, err, jerr)
		}
		if err != nil {
			return
		}
		if got != want {
			t.Fatalf("%q: got %+v, encoding/json %+v", data, got, want)
		}
		enc := lifecycle.EncodeTokenChunk(got)
		if legacy, _ := json.Marshal(legacyToken(got)); string(enc) != string(legacy) {
			t.Fatalf("encoded %s, encoding/json %s", enc, legacy)
		}
		if back, err := lifecycle.DecodeTokenChunk(enc); err != nil || back != got {
			t.Fatalf("round trip of %s: %+v, %v", enc, back, err)
		}
	})
}

// FuzzTokenChunkEncode checks the encoder against encoding/json for any
// strings, valid UTF-8 or not.
func FuzzTokenChunkEncode(f *testing.F) {
	for _, tc := range tokenCases {
		f.Add(tc.c.Job, tc.c.Seq, tc.c.Text, tc.c.TokenID, tc.c.Final)
	}
	f.Fuzz(func(t *testing.T, job string, seq uint64, text string, id int64, final bool) {
		c := lifecycle.TokenChunk{Job: job, Seq: seq, Text: text, TokenID: id, Final: final}
		want, err := json.Marshal(legacyToken(c))
		if err != nil {
			t.Fatal(err)
		}
		if got := lifecycle.EncodeTokenChunk(c); string(got) != string(want) {
			t.Fatalf("got  %s\nwant %s", got, want)
		}
	})
}

var benchChunk = lifecycle.TokenChunk{Job: "01JB4Z8Q1XK3V7M2N5P8R0T6W9", Seq: 117, Text: " the", TokenID: 262}

// BenchmarkTokenChunkEncode compares the encoder with what the worker did
// before (json.Marshal of a struct).
func BenchmarkTokenChunkEncode(b *testing.B) {
	b.Run("encoding-json", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			if _, err := json.Marshal(legacyToken(benchChunk)); err != nil {
				b.Fatal(err)
			}
		}
	})
	b.Run("lifecycle", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			_ = lifecycle.EncodeTokenChunk(benchChunk)
		}
	})
}

// BenchmarkTokenChunkDecode compares the decoder with what resultsvc,
// ingress and the CLI did before (json.Unmarshal into a struct).
func BenchmarkTokenChunkDecode(b *testing.B) {
	data := lifecycle.EncodeTokenChunk(benchChunk)
	escaped := lifecycle.EncodeTokenChunk(lifecycle.TokenChunk{Job: benchChunk.Job, Seq: 118, Text: "\n\"héllo\"", TokenID: 1})
	b.Run("encoding-json", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			var t legacyToken
			if err := json.Unmarshal(data, &t); err != nil {
				b.Fatal(err)
			}
		}
	})
	b.Run("lifecycle", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			if _, err := lifecycle.DecodeTokenChunk(data); err != nil {
				b.Fatal(err)
			}
		}
	})
	b.Run("encoding-json-escaped", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			var t legacyToken
			if err := json.Unmarshal(escaped, &t); err != nil {
				b.Fatal(err)
			}
		}
	})
	b.Run("lifecycle-escaped", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			if _, err := lifecycle.DecodeTokenChunk(escaped); err != nil {
				b.Fatal(err)
			}
		}
	})
}

var sinkMsg *nats.Msg

// BenchmarkTokenMsg compares building a token message with how the worker
// built it before (json.Marshal, then the headers).
func BenchmarkTokenMsg(b *testing.B) {
	ctx, topo := context.Background(), jetstream.DefaultTopology()
	pc := &inferqpb.TokenChunk{JobId: benchChunk.Job, Seq: benchChunk.Seq, Text: benchChunk.Text, TokenId: benchChunk.TokenID}
	b.Run("encoding-json", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			data, err := json.Marshal(legacyToken{Job: pc.JobId, Seq: pc.Seq, Text: pc.Text, TokenID: pc.TokenId, Final: pc.Final})
			if err != nil {
				b.Fatal(err)
			}
			msg := &nats.Msg{Subject: topo.TokenSubject("acme", pc.JobId), Data: data, Header: nats.Header{}}
			msg.Header.Set(jetstream.HeaderSeq, strconv.FormatUint(pc.Seq, 10))
			msg.Header.Set(jetstream.HeaderAttempt, strconv.FormatUint(1, 10))
			jetstream.InjectTrace(ctx, msg.Header)
			sinkMsg = msg // it escapes to the publisher, as in the worker
		}
	})
	b.Run("lifecycle", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			sinkMsg = lifecycle.TokenMsg(ctx, topo, "acme", 1, lifecycle.TokenChunkOf(pc))
		}
	})
}
