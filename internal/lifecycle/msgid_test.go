package lifecycle_test

import (
	"testing"

	"github.com/inferq/inferq/internal/lifecycle"
	"github.com/inferq/inferq/schemas/inferqpb"
)

// The ids are the dedupe keys of messages already in streams: they must
// not change.
func TestMsgID(t *testing.T) {
	tests := []struct {
		name string
		got  string
		want string
	}{
		{"running", lifecycle.MsgID("01JB4Z8Q1X", 1, lifecycle.KindRunning), "01JB4Z8Q1X:1:running"},
		{"result", lifecycle.MsgID("j", 3, lifecycle.KindResult), "j:3:result"},
		{"failed", lifecycle.MsgID("j", 1, lifecycle.KindFailed), "j:1:failed"},
		{"expired", lifecycle.MsgID("j", 1, lifecycle.KindExpired), "j:1:expired"},
		{"cancelled", lifecycle.MsgID("j", 2, lifecycle.KindCancelled), "j:2:cancelled"},
		{"queued", lifecycle.MsgID("j", 2, lifecycle.KindQueued), "j:2:queued"},
		{"dead", lifecycle.MsgID("j", 4294967295, lifecycle.KindDead), "j:4294967295:dead"},
		{"replay", lifecycle.ReplayMsgID("j", 2), "j:r2"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			if tc.got != tc.want {
				t.Fatalf("got %q, want %q", tc.got, tc.want)
			}
		})
	}
}

func TestBatchID(t *testing.T) {
	a := &inferqpb.BatchJob{Id: "a", Attempt: 1}
	b := &inferqpb.BatchJob{Id: "b", Attempt: 1}
	id := lifecycle.BatchID([]*inferqpb.BatchJob{a, b})
	// The hash of "a\x001\x00b\x001\x00", first 13 bytes: a batch id
	// already in a stream's dedupe window must keep its value.
	if id != "e93e371e85b82a2544d96cad20" {
		t.Fatalf("batch id %q", id)
	}
	if got := lifecycle.BatchID([]*inferqpb.BatchJob{b, a}); got != id {
		t.Fatalf("order changed the id: %q != %q", got, id)
	}
	if got := lifecycle.BatchID([]*inferqpb.BatchJob{a, {Id: "b", Attempt: 2}}); got == id {
		t.Fatal("a new attempt kept the batch id: the replayed job's batch would be dropped as a duplicate")
	}
	if got := lifecycle.BatchID([]*inferqpb.BatchJob{a}); got == id {
		t.Fatal("a different set of jobs has the same id")
	}
}
