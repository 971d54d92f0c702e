package jetstream

import (
	"encoding/json"
	"errors"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	natsjs "github.com/nats-io/nats.go/jetstream"

	"github.com/inferq/inferq/internal/testutil"
)

// TestPublishMsgAnswers: PublishMsg answers what nats.go's PublishMsg
// answers, for a stored message, a duplicate, a lost compare-and-set and a
// subject no stream takes.
func TestPublishMsgAnswers(t *testing.T) {
	n := testutil.StartNATS(t)
	ctx := testutil.Context(t)
	if _, err := n.JS.CreateStream(ctx, natsjs.StreamConfig{Name: "S", Subjects: []string{"s.>"}}); err != nil {
		t.Fatal(err)
	}
	msg := func(id string) *nats.Msg {
		return &nats.Msg{Subject: "s.a", Data: []byte("x"), Header: nats.Header{nats.MsgIdHdr: []string{id}}}
	}
	ack, err := PublishMsg(ctx, n.JS, msg("one"))
	if err != nil || *ack != (natsjs.PubAck{Stream: "S", Sequence: 1}) {
		t.Fatalf("first publish: %+v, %v", ack, err)
	}
	ack, err = PublishMsg(ctx, n.JS, msg("one"))
	if err != nil || *ack != (natsjs.PubAck{Stream: "S", Sequence: 1, Duplicate: true}) {
		t.Fatalf("duplicate: %+v, %v", ack, err)
	}
	cas := &nats.Msg{Subject: "s.a", Data: []byte("y"), Header: nats.Header{natsjs.ExpectedLastSubjSeqHeader: []string{"0"}}}
	if _, err = PublishMsg(ctx, n.JS, cas); !errors.Is(err, natsjs.ErrKeyExists) {
		t.Fatalf("lost compare-and-set: %v, want ErrKeyExists", err)
	}
	var apiErr *natsjs.APIError
	if !errors.As(err, &apiErr) || apiErr.ErrorCode != natsjs.JSErrCodeStreamWrongLastSequence {
		t.Fatalf("lost compare-and-set: %v, want the server's APIError", err)
	}
	start := time.Now()
	if _, err = PublishMsg(ctx, n.JS, &nats.Msg{Subject: "nobody.here", Data: []byte("z")}); !errors.Is(err, natsjs.ErrNoStreamResponse) {
		t.Fatalf("no stream: %v, want ErrNoStreamResponse", err)
	}
	if d := time.Since(start); d < 2*natsjs.DefaultPubRetryWait {
		t.Fatalf("no stream answered after %v: the retries were skipped", d)
	}
}

// FuzzDecodePubAck holds the hand-read PubAck to encoding/json: whatever
// decodePubAck takes, encoding/json decodes to the same PubAck, with no
// error member.
func FuzzDecodePubAck(f *testing.F) {
	for _, s := range []string{
		`{"stream":"INFERQ_JOBS","seq":12}`,
		`{"stream":"S","seq":1,"duplicate":true}`,
		`{"stream":"S","domain":"hub","seq":18446744073709551615,"duplicate":false}`,
		`{"stream":"S","seq":18446744073709551616}`,
		`{"error":{"code":400,"err_code":10071,"description":"wrong last sequence: 3"}}`,
		` { "stream" : "S" , "seq" : 0 , "val" : "1" } `,
		`{"stream":"S\u0041","seq":01}`, `{"stream":"S","seq":1.0}`, `{"stream":"","seq":1}`, `{}`, `{"stream":"S","seq":1,}`,
	} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		got, ok := decodePubAck(data)
		if !ok {
			return
		}
		var want struct {
			Error *natsjs.APIError `json:"error"`
			natsjs.PubAck
		}
		if err := json.Unmarshal(data, &want); err != nil || want.Error != nil || want.Stream == "" {
			t.Fatalf("decodePubAck took %q, which encoding/json reads as %+v, %v", data, want, err)
		}
		if got != want.PubAck {
			t.Fatalf("decodePubAck(%q) = %+v, encoding/json %+v", data, got, want.PubAck)
		}
	})
}

// BenchmarkDecodePubAck: the PubAck of a job's publish.
func BenchmarkDecodePubAck(b *testing.B) {
	data := []byte(`{"stream":"INFERQ_JOBS","seq":123456789}`)
	b.ReportAllocs()
	for b.Loop() {
		if _, ok := decodePubAck(data); !ok {
			b.Fatal("not decoded")
		}
	}
}
