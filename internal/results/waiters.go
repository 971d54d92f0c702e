package results

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"time"
)

// Fallback says what a job is before its first stored change: a Wait
// caller passes one to wait on a job that was accepted but has no record
// yet. It returns ErrNotFound when there is no such job either.
type Fallback func(ctx context.Context) (*Record, error)

// waiters maps job ids to the wake channels of their current waiters. A
// wake may carry the job's new record (the KV store's change notices do), so
// the waiter needs no read; a nil record means "read it again".
type waiters struct {
	mu sync.Mutex
	m  map[string]map[chan *Record]struct{}
}

func newWaiters() waiters { return waiters{m: make(map[string]map[chan *Record]struct{})} }

// add registers a waiter for id. Its channel has room for one wake, so wakes
// coalesce (the latest record wins) and the fan-out never blocks.
func (w *waiters) add(id string) (<-chan *Record, func()) {
	ch := make(chan *Record, 1)
	w.mu.Lock()
	set := w.m[id]
	if set == nil {
		set = make(map[chan *Record]struct{})
		w.m[id] = set
	}
	set[ch] = struct{}{}
	w.mu.Unlock()
	return ch, func() {
		w.mu.Lock()
		// set stays w.m[id] while ch is in it: sets are dropped only when empty.
		delete(set, ch)
		if len(set) == 0 {
			delete(w.m, id)
		}
		w.mu.Unlock()
	}
}

// waiting reports whether anyone waits for id, so a notice nobody waits for
// is not decoded.
func (w *waiters) waiting(id string) bool {
	w.mu.Lock()
	defer w.mu.Unlock()
	return len(w.m[id]) > 0
}

// wait is Wait for both stores: register, read, and take every wake's record
// (or re-read on a bare wake or tick) until done(rec), ctx ends (the last
// record, no error) or closed. Registering before the first read means no
// change can slip in between. A job with no record yet is what orElse says
// until its first change arrives.
func (w *waiters) wait(ctx context.Context, id string, done func(*Record) bool,
	get func(context.Context, string) (*Record, error), orElse Fallback,
	closed <-chan struct{}, tick <-chan time.Time) (*Record, error) {
	return w.waitFrom(ctx, id, done, get, orElse, nil, closed, tick)
}

// waitFrom is wait, where skipRead (checked once registered) says the
// first read can be skipped and orElse's record taken as current.
func (w *waiters) waitFrom(ctx context.Context, id string, done func(*Record) bool,
	get func(context.Context, string) (*Record, error), orElse Fallback, skipRead func() bool,
	closed <-chan struct{}, tick <-chan time.Time) (*Record, error) {
	wake, unregister := w.add(id)
	defer unregister()
	var (
		rec *Record
		err error
	)
	if skipRead != nil && orElse != nil && skipRead() {
		rec, err = orElse(ctx)
	} else {
		rec, err = get(ctx, id)
		if errors.Is(err, ErrNotFound) && orElse != nil {
			rec, err = orElse(ctx)
		}
	}
	if err != nil {
		return nil, err
	}
	for !done(rec) {
		var next *Record
		select {
		case <-ctx.Done():
			return rec, nil
		case <-closed:
			return rec, fmt.Errorf("wait for job %s: %w", id, ErrClosed)
		case next = <-wake:
		case <-tick:
		}
		if next == nil {
			next, err = get(ctx, id)
			switch {
			case errors.Is(err, ErrNotFound) && orElse != nil:
				continue // no change stored yet: still what orElse said
			case err != nil && ctx.Err() != nil && !errors.Is(err, ErrNotFound):
				return rec, nil
			case err != nil:
				return rec, fmt.Errorf("wait for job %s: %w", id, err)
			}
		}
		if !Behind(next, rec) {
			rec = next
		}
	}
	return rec, nil
}

// Behind reports whether a is an older state of the job than b: an earlier
// attempt, or a lower-ranked status in the same attempt. Notices from
// several writers can arrive out of order; a waiter never steps back.
func Behind(a, b *Record) bool {
	return a.Attempts < b.Attempts || (a.Attempts == b.Attempts && a.Status.Rank() < b.Status.Rank())
}

// wake hands rec (nil: "read again") to every waiter of id, replacing a
// wake they have not taken yet.
func (w *waiters) wake(id string, rec *Record) {
	w.mu.Lock()
	defer w.mu.Unlock()
	for ch := range w.m[id] {
		signal(ch, rec)
	}
}

// wakeAll makes every waiter read again.
func (w *waiters) wakeAll() {
	w.mu.Lock()
	defer w.mu.Unlock()
	for _, set := range w.m {
		for ch := range set {
			signal(ch, nil)
		}
	}
}

// signal puts rec in ch, replacing the wake not taken yet unless that one
// carries a later state of the job. Callers hold the waiters' lock, so no
// other sender races for the slot.
func signal(ch chan *Record, rec *Record) {
	select {
	case pending := <-ch:
		if pending != nil && rec != nil && Behind(rec, pending) {
			rec = pending
		}
	default:
	}
	ch <- rec
}
