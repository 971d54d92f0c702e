package lifecycle_test

import (
	"context"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"google.golang.org/protobuf/proto"

	"github.com/inferq/inferq/internal/lifecycle"
	"github.com/inferq/inferq/pkg/jetstream"
	"github.com/inferq/inferq/schemas/inferqpb"
)

func TestEvents(t *testing.T) {
	at := time.Unix(1700000000, 5)
	job := &inferqpb.Job{Id: "j1", Tenant: "acme", Model: "m", Version: "2", Attempt: 3, RequestId: "r"}
	b := &inferqpb.Batch{Id: "b1", Model: "m", Version: "2"}
	bj := &inferqpb.BatchJob{Id: "j1", Tenant: "acme", Attempt: 3, RequestId: "r", JobsSeq: 7}
	boom := &inferqpb.Error{Code: "boom", Message: "it broke"}
	tests := []struct {
		name    string
		ev      lifecycle.Event
		kind    string
		msgID   string
		status  lifecycle.Status
		code    string
		worker  string
		batch   string
		request string
		jobsSeq uint64
	}{
		{"replay", lifecycle.ReplayEvent(job, at), jetstream.EventQueued, "j1:3:queued", lifecycle.Queued, "", "", "", "", 0},
		{"expired", lifecycle.ExpiredEvent(job, 7, at), jetstream.EventFailed, "j1:3:expired", lifecycle.Expired, lifecycle.CodeExpired, "", "", "", 7},
		{"rejected", lifecycle.RejectedEvent(job, 7, at, "invalid_input", "no"), jetstream.EventFailed, "j1:3:failed", lifecycle.Failed, "invalid_input", "", "", "", 7},
		{"cancel request", lifecycle.CancelRequestEvent(lifecycle.JobRef{ID: "j1", Tenant: "acme", Model: "m", Version: "2", Attempt: 3}, at),
			jetstream.EventFailed, "j1:3:cancelled", lifecycle.Cancelled, lifecycle.CodeCancelled, "", "", "", 0},
		{"running", lifecycle.RunningEvent(b, bj, "w1", at), jetstream.EventRunning, "j1:3:running", lifecycle.Running, "", "w1", "b1", "", 7},
		{"succeeded", lifecycle.SucceededEvent(b, bj, "w1", at, nil), jetstream.EventResult, "j1:3:result", lifecycle.Succeeded, "", "w1", "b1", "r", 7},
		{"failed", lifecycle.FailedEvent(b, bj, "w1", at, boom), jetstream.EventFailed, "j1:3:failed", lifecycle.Failed, "boom", "w1", "b1", "r", 7},
		// resultsvc ends a batch no worker finished with the worker's id: one is a duplicate.
		{"failed by resultsvc", lifecycle.FailedEvent(b, bj, "", at, boom), jetstream.EventFailed, "j1:3:failed", lifecycle.Failed, "boom", "", "b1", "r", 7},
		// A worker's cancelled end travels, and dedupes, as its failed end.
		{"cancelled by worker", lifecycle.CancelledEvent(b, bj, "w1", at, &inferqpb.Error{Code: lifecycle.CodeCancelled}), jetstream.EventFailed, "j1:3:failed", lifecycle.Cancelled, lifecycle.CodeCancelled, "w1", "b1", "r", 7},
	}
	topo := jetstream.DefaultTopology()
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			ev, m := tc.ev, tc.ev.Msg
			if ev.Kind != tc.kind || ev.MsgID != tc.msgID || ev.Status() != tc.status {
				t.Fatalf("kind %q id %q status %q, want %q %q %q", ev.Kind, ev.MsgID, ev.Status(), tc.kind, tc.msgID, tc.status)
			}
			if m.JobId != "j1" || m.Tenant != "acme" || m.Model != "m" || m.Version != "2" || m.Attempt != 3 || m.TimeUnixNano != at.UnixNano() {
				t.Fatalf("job fields: %v", m)
			}
			if m.Worker != tc.worker || m.BatchId != tc.batch || m.RequestId != tc.request || m.JobsSeq != tc.jobsSeq {
				t.Fatalf("worker %q batch %q request %q jobs_seq %d", m.Worker, m.BatchId, m.RequestId, m.JobsSeq)
			}
			if m.GetError().GetCode() != tc.code {
				t.Fatalf("error code %q, want %q", m.GetError().GetCode(), tc.code)
			}
			if got := ev.Subject(topo); got != "inferq.events.m."+tc.kind {
				t.Fatalf("subject %q", got)
			}
			msg, err := ev.NewMsg(context.Background(), topo)
			if err != nil {
				t.Fatal(err)
			}
			back, err := lifecycle.DecodeEvent(msg.Data)
			if msg.Header.Get(nats.MsgIdHdr) != tc.msgID || err != nil || !proto.Equal(back, m) {
				t.Fatalf("message: id %q, body %v", msg.Header.Get(nats.MsgIdHdr), back)
			}
		})
	}
}

func TestDecodeEventRejectsGarbage(t *testing.T) {
	if _, err := lifecycle.DecodeEvent([]byte{0xff, 0xff, 0xff}); err == nil {
		t.Fatal("garbage decoded as an event")
	}
}

func TestDeadLetterMsg(t *testing.T) {
	at := time.Date(2026, 11, 30, 12, 0, 0, 0, time.FixedZone("x", 3600))
	b := &inferqpb.Batch{Id: "b1", Model: "m"}
	j := &inferqpb.BatchJob{Id: "j1", Tenant: "acme", Attempt: 2, JobsSeq: 9}
	msg, err := lifecycle.DeadLetterMsg(jetstream.DefaultTopology(), b, j, 5, "boom", at)
	if err != nil {
		t.Fatal(err)
	}
	if msg.Subject != "inferq.dead.m" || msg.Header.Get(nats.MsgIdHdr) != "j1:2:dead" {
		t.Fatalf("subject %q id %q", msg.Subject, msg.Header.Get(nats.MsgIdHdr))
	}
	want := `{"job":"j1","tenant":"acme","model":"m","jobs_seq":9,"attempt":2,"deliveries":5,"batch":"b1","error":"boom","time":"2026-11-30T11:00:00Z"}`
	if string(msg.Data) != want {
		t.Fatalf("record\n got %s\nwant %s", msg.Data, want)
	}
	dl, err := lifecycle.DecodeDeadLetter(msg.Data)
	if err != nil || dl.Job != "j1" || dl.JobsSeq != 9 || dl.Deliveries != 5 || !dl.Time.Equal(at) {
		t.Fatalf("decoded %+v, %v", dl, err)
	}
	if _, err := lifecycle.DecodeDeadLetter([]byte("{")); err == nil {
		t.Fatal("a broken record decoded")
	}
}
