package results

import (
	"context"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/inferq/inferq/internal/testutil"
)

// TestKVWaitWokenByNotice: with the safety re-read pushed out of reach,
// every waiter must still be woken by the change notice of the update it
// waits for, however the update and the wait interleave.
func TestKVWaitWokenByNotice(t *testing.T) {
	old := kvRereadEvery
	kvRereadEvery = time.Hour
	t.Cleanup(func() { kvRereadEvery = old })
	n := testutil.StartNATS(t)
	s, err := NewKV(t.Context(), n.JS, KVConfig{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	for i := range 100 {
		id := fmt.Sprintf("job-%d", i)
		if err := s.Create(t.Context(), &Record{ID: id, Model: "m", Version: "1", Status: Queued, CreatedAt: time.Now(), Attempts: 1}); err != nil {
			t.Fatal(err)
		}
		got := make(chan *Record, 1)
		go func() {
			ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
			defer cancel()
			rec, _ := s.Wait(ctx, id, func(r *Record) bool { return r.Status.Terminal() }, nil)
			got <- rec
		}()
		time.Sleep(time.Duration(i%3) * time.Millisecond) // before, during and after the waiter's read
		if _, _, err := s.Apply(t.Context(), Update{ID: id, Status: Succeeded, Attempt: 1, Time: time.Now()}); err != nil {
			t.Fatal(err)
		}
		if rec := <-got; rec == nil || rec.Status != Succeeded {
			t.Fatalf("job %s: waiter saw %+v, not the update", id, rec)
		}
	}
}

// TestKVReserveLegacy: a key stored by a version that kept only the job id
// reads back as that job with no request hash (it matches any request).
func TestKVReserveLegacy(t *testing.T) {
	n := testutil.StartNATS(t)
	s, err := NewKV(t.Context(), n.JS, KVConfig{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	if _, err := s.kv.Create(t.Context(), "idem.abc123", []byte("oldjob")); err != nil {
		t.Fatal(err)
	}
	got, err := s.Reserve(t.Context(), "abc123", Reservation{ID: "newjob", Hash: strings.Repeat("a", 64)})
	if err != nil || got != (Reservation{ID: "oldjob"}) {
		t.Fatalf("Reserve over a bare id: %+v, %v; want oldjob without a hash", got, err)
	}
}
