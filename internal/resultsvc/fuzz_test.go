package resultsvc

import (
	"context"
	"encoding/json"
	"testing"
	"time"

	"github.com/inferq/inferq/internal/lifecycle"
	"github.com/inferq/inferq/internal/results"
	"github.com/inferq/inferq/pkg/jetstream"
	"github.com/inferq/inferq/schemas/inferqpb"
)

// FuzzEventUpdate feeds arbitrary bytes through what resultsvc does with an
// event before the store sees it: decode, then turn into an update. It must
// never panic, and whatever it hands the store must pass the store's own
// check, with a result only on a succeeded update and always valid JSON.
func FuzzEventUpdate(f *testing.F) {
	topo := jetstream.DefaultTopology()
	at := time.Unix(1700000000, 0)
	b := &inferqpb.Batch{Id: "b", Model: "m", Version: "1"}
	j := &inferqpb.BatchJob{Id: "j", Attempt: 1, JobsSeq: 3}
	for _, ev := range []lifecycle.Event{
		lifecycle.RunningEvent(b, j, "w", at),
		lifecycle.SucceededEvent(b, j, "w", at, []*inferqpb.Tensor{{Name: "o", Datatype: "INT32", Shape: []int64{1, 1}, Data: []byte{1, 0, 0, 0}}}),
		lifecycle.SucceededEvent(b, j, "w", at, []*inferqpb.Tensor{{Name: "o", Datatype: "FP32", Shape: []int64{2}, Data: []byte{1}}}),
		lifecycle.FailedEvent(b, j, "w", at, &inferqpb.Error{Code: "boom", Message: "m"}),
		lifecycle.ExpiredEvent(&inferqpb.Job{Id: "j", Model: "m", Attempt: 2}, 3, at),
		lifecycle.ReplayEvent(&inferqpb.Job{Id: "j", Model: "m", Attempt: 2}, at),
	} {
		msg, err := ev.NewMsg(context.Background(), topo)
		if err != nil {
			f.Fatal(err)
		}
		f.Add(msg.Data)
	}
	f.Add([]byte{})
	f.Add([]byte{0xff, 0xff, 0xff})
	f.Fuzz(func(t *testing.T, data []byte) {
		ev, err := lifecycle.DecodeEvent(data)
		if err != nil {
			return
		}
		u, err := updateOf(ev)
		if err != nil {
			return
		}
		if err := u.Check(); err != nil {
			t.Fatalf("update fails the store's check: %v (%+v)", err, u)
		}
		if u.ID != ev.JobId || u.Attempt != ev.Attempt {
			t.Fatalf("update %+v of event %v", u, ev)
		}
		switch {
		case u.Status == results.Succeeded && !json.Valid(u.Result):
			t.Fatalf("succeeded with result %q", u.Result)
		case u.Status != results.Succeeded && u.Result != nil:
			t.Fatalf("%s with a result", u.Status)
		}
	})
}
