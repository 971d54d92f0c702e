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
// waits for, written by another store (another process), however the update
// and the wait interleave.
func TestKVWaitWokenByNotice(t *testing.T) {
	noReread(t)
	n := testutil.StartNATS(t)
	s, writer := newTestKV(t, n), newTestKV(t, n)
	for i := range 100 {
		id := fmt.Sprintf("job-%d", i)
		createQueued(t, s, id)
		got := waitTerminal(s, id)
		time.Sleep(time.Duration(i%3) * time.Millisecond) // before, during and after the waiter's read
		if _, _, err := writer.Apply(t.Context(), Update{ID: id, Status: Succeeded, Attempt: 1, Time: time.Now()}); err != nil {
			t.Fatal(err)
		}
		if rec := <-got; rec == nil || rec.Status != Succeeded {
			t.Fatalf("job %s: waiter saw %+v, not the update", id, rec)
		}
	}
}

// TestKVWaitWokenByOwnApply: a waiter on the store that applies the change
// is handed the record by Apply itself, with no change notice (the
// subscription is gone) and no re-read (pushed out of reach) to wake it.
func TestKVWaitWokenByOwnApply(t *testing.T) {
	noReread(t)
	s := newTestKV(t, testutil.StartNATS(t))
	if err := s.sub.Unsubscribe(); err != nil {
		t.Fatal(err)
	}
	const id = "job-own"
	createQueued(t, s, id)
	got := waitTerminal(s, id)
	testutil.Eventually(t, 10*time.Second, func() bool { return WaitersOf(s, id, false) == 1 }, "waiter of %s registered", id)
	if _, _, err := s.Apply(t.Context(), Update{ID: id, Status: Succeeded, Attempt: 1, Time: time.Now()}); err != nil {
		t.Fatal(err)
	}
	if rec := <-got; rec == nil || rec.Status != Succeeded {
		t.Fatalf("waiter saw %+v, not the update", rec)
	}
}

// TestKVOwnNoticeNotEchoed: a store's change notices reach every other
// subscriber but are not handed back to the store that sent them (it woke
// its own waiters already), so they cost it no delivery.
func TestKVOwnNoticeNotEchoed(t *testing.T) {
	n := testutil.StartNATS(t)
	s := newTestKV(t, n)
	other, err := n.Conn.SubscribeSync(s.notify + ">")
	if err != nil {
		t.Fatal(err)
	}
	for i := range 3 {
		id := fmt.Sprintf("job-echo-%d", i)
		createQueued(t, s, id)
		if _, _, err := s.Apply(t.Context(), Update{ID: id, Status: Succeeded, Attempt: 1, Time: time.Now()}); err != nil {
			t.Fatal(err)
		}
		if m, err := other.NextMsg(10 * time.Second); err != nil || m.Subject != s.notify+id {
			t.Fatalf("another subscriber: %v, %v", m, err)
		}
	}
	if err := s.nc.Flush(); err != nil {
		t.Fatal(err)
	}
	if got, _, err := s.sub.Pending(); err != nil || got != 0 {
		t.Fatalf("the store's own subscription holds %d of its notices (%v)", got, err)
	}
	if d, err := s.sub.Delivered(); err != nil || d != 0 {
		t.Fatalf("the store was handed %d of its own notices (%v)", d, err)
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

// TestKVWaitFrom: a job this store has heard nothing of is waited on from
// the caller's record without a read; a change whose notice was lost (here:
// written straight into the bucket) shows up at the next safety re-read,
// and one this store noticed is read at once.
func TestKVWaitFrom(t *testing.T) {
	old := kvRereadEvery
	kvRereadEvery = 300 * time.Millisecond
	t.Cleanup(func() { kvRereadEvery = old })
	n := testutil.StartNATS(t)
	s, err := NewKV(t.Context(), n.JS, KVConfig{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	terminal := func(r *Record) bool { return r.Status.Terminal() }
	start := &Record{ID: "silent", Model: "m", Status: Queued, CreatedAt: time.Now(), Attempts: 1}
	done, err := encodeRecord(&Record{ID: "silent", Model: "m", Status: Succeeded, CreatedAt: start.CreatedAt, Attempts: 1})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := s.kv.Create(t.Context(), "silent", done); err != nil { // no notice
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(t.Context(), 100*time.Millisecond)
	got, err := s.WaitFrom(ctx, "silent", terminal, start)
	cancel()
	if err != nil || got != start {
		t.Fatalf("WaitFrom on an unnoticed job read the bucket: %+v, %v", got, err)
	}
	ctx, cancel = context.WithTimeout(t.Context(), 5*time.Second)
	got, err = s.WaitFrom(ctx, "silent", terminal, start)
	cancel()
	if err != nil || got == nil || got.Status != Succeeded {
		t.Fatalf("WaitFrom did not pick up the unnoticed change at the re-read: %+v, %v", got, err)
	}
	// Noticed (here: read) jobs are read first, whatever the caller holds.
	ctx, cancel = context.WithTimeout(t.Context(), 100*time.Millisecond)
	got, err = s.WaitFrom(ctx, "silent", terminal, start)
	cancel()
	if err != nil || got == nil || got.Status != Succeeded {
		t.Fatalf("WaitFrom on a known job did not read it: %+v, %v", got, err)
	}
}

// noReread pushes the KV store's safety re-read out of reach for the test,
// so only a notice or the store's own write can wake a waiter.
func noReread(t *testing.T) {
	old := kvRereadEvery
	kvRereadEvery = time.Hour
	t.Cleanup(func() { kvRereadEvery = old })
}

// newTestKV opens a KV store on n's JetStream, closed with the test.
func newTestKV(t *testing.T, n *testutil.NATS) *KVStore {
	t.Helper()
	s, err := NewKV(t.Context(), n.JS, KVConfig{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	return s
}

// createQueued stores a queued record for id.
func createQueued(t *testing.T, s *KVStore, id string) {
	t.Helper()
	if err := s.Create(t.Context(), &Record{ID: id, Model: "m", Version: "1", Status: Queued, CreatedAt: time.Now(), Attempts: 1}); err != nil {
		t.Fatal(err)
	}
}

// waitTerminal waits on s for id to end, for up to 20 s, and sends what the
// wait returned.
func waitTerminal(s *KVStore, id string) <-chan *Record {
	got := make(chan *Record, 1)
	go func() {
		ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
		defer cancel()
		rec, _ := s.Wait(ctx, id, func(r *Record) bool { return r.Status.Terminal() }, nil)
		got <- rec
	}()
	return got
}
