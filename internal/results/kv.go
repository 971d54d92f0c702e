package results

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	pjs "github.com/inferq/inferq/pkg/jetstream"
)

// KVConfig configures NewKV.
type KVConfig struct {
	Bucket    string        // default "inferq_results"
	Retention time.Duration // bucket TTL: a record lives this long after its last change; default 24h
	Replicas  int           // default 1
}

// DefaultKVBucket is the bucket NewKV uses when none is configured.
const DefaultKVBucket = "inferq_results"

// KVStore is the embedded Store: records are JSON values in a JetStream
// key-value bucket, updated by compare-and-set and watched for Wait.
type KVStore struct {
	kv        jetstream.KeyValue
	js        jetstream.JetStream
	put       string             // subject prefix of the bucket's keys: $KV.<bucket>.
	nc        *nats.Conn         // change notices, published and received (see noEcho)
	ownConn   bool               // nc is the store's own, to close with it
	notify    string             // subject prefix of change notices: <bucket>.changed.<id>
	sub       *nats.Subscription // every change notice, to wake waiters
	waiters   waiters
	known     seen          // jobs with a record, as far as this store knows (written, read or noticed)
	done      chan struct{} // closed by Close; releases blocked waiters
	closeOnce sync.Once
}

var _ Store = (*KVStore)(nil)

// NewKV creates the bucket, or updates its settings if it exists, so that
// every process can call it at start-up.
func NewKV(ctx context.Context, js jetstream.JetStream, cfg KVConfig) (*KVStore, error) {
	if cfg.Bucket == "" {
		cfg.Bucket = DefaultKVBucket
	}
	if cfg.Retention == 0 {
		cfg.Retention = DefaultRetention
	}
	if cfg.Replicas == 0 {
		cfg.Replicas = 1
	}
	if cfg.Retention < 0 || cfg.Replicas < 0 {
		return nil, fmt.Errorf("kv results store: invalid config (retention %v, replicas %d)", cfg.Retention, cfg.Replicas)
	}
	kv, err := js.CreateOrUpdateKeyValue(ctx, jetstream.KeyValueConfig{
		Bucket:      cfg.Bucket,
		Description: "inferq job records",
		TTL:         cfg.Retention,
		History:     1,
		Replicas:    cfg.Replicas,
	})
	if err != nil {
		return nil, fmt.Errorf("kv results store: bucket %s: %w", cfg.Bucket, err)
	}
	s := &KVStore{kv: kv, js: js, put: "$KV." + cfg.Bucket + ".", nc: js.Conn(), notify: cfg.Bucket + ".changed.", done: make(chan struct{}),
		waiters: newWaiters(), known: newSeen(seenPerGeneration)}
	if nc, err := noEcho(s.nc); err == nil {
		s.nc, s.ownConn = nc, true
	} // else the shared connection: its own notices come back too, and cost a delivery
	s.sub, err = s.nc.Subscribe(s.notify+">", s.notice)
	if err != nil {
		_ = s.Close()
		return nil, fmt.Errorf("kv results store: subscribe to %s changes: %w", cfg.Bucket, err)
	}
	return s, nil
}

// noEcho connects again as nc did, but with NoEcho, for the change notices:
// the server then never hands the store its own notices back. Apply wakes
// this store's waiters itself, so in `inferq dev`, where the ingress and
// resultsvc share the store, a job's notice costs no delivery at all, and
// other processes' stores still get it.
func noEcho(nc *nats.Conn) (*nats.Conn, error) {
	opts := nc.Opts
	opts.NoEcho = true
	opts.Name = strings.TrimSpace(opts.Name + " results notices")
	opts.ClosedCB = nil // the caller's handler is about the caller's connection
	return opts.Connect()
}

// Create implements Store.
func (s *KVStore) Create(ctx context.Context, rec *Record) error {
	r, err := prepareRecord(rec)
	if err != nil {
		return err
	}
	data, err := encodeRecord(r)
	if err != nil {
		return fmt.Errorf("create job %s: %w", r.ID, err)
	}
	if _, err := s.kv.Create(ctx, r.ID, data); err != nil {
		if errors.Is(err, jetstream.ErrKeyExists) {
			return fmt.Errorf("create job %s: %w", r.ID, ErrExists)
		}
		return fmt.Errorf("create job %s: %w", r.ID, err)
	}
	return nil
}

// Get implements Store.
func (s *KVStore) Get(ctx context.Context, id string) (*Record, error) {
	rec, _, err := s.get(ctx, id)
	if err != nil {
		return nil, fmt.Errorf("get job %q: %w", id, err)
	}
	return rec, nil
}

// get returns the record and its revision, for compare-and-set.
func (s *KVStore) get(ctx context.Context, id string) (*Record, uint64, error) {
	if !validID(id) {
		return nil, 0, ErrNotFound
	}
	e, err := s.kv.Get(ctx, id)
	if errors.Is(err, jetstream.ErrKeyNotFound) || errors.Is(err, jetstream.ErrKeyDeleted) {
		return nil, 0, ErrNotFound
	}
	if err != nil {
		return nil, 0, err
	}
	rec, err := decodeRecord(e.Value())
	if err != nil {
		return nil, 0, err
	}
	s.known.add(id)
	return rec, e.Revision(), nil
}

// Apply implements Store: Advance in Go, written back only if the revision
// read is still the latest, retried on conflict. The record of a job this
// store has not seen is first tried as a new key, which saves the read for
// the usual first event of a job.
func (s *KVStore) Apply(ctx context.Context, u Update) (*Record, bool, error) {
	u, err := prepareUpdate(u)
	if err != nil {
		return nil, false, err
	}
	if !validID(u.ID) {
		return nil, false, fmt.Errorf("apply to job %q: %w", u.ID, ErrNotFound)
	}
	tryCreate := u.creates() && !s.known.has(u.ID)
	for {
		var (
			rec *Record
			rev uint64
		)
		if !tryCreate {
			rec, rev, err = s.get(ctx, u.ID)
			switch {
			case errors.Is(err, ErrNotFound) && u.creates():
				tryCreate = true
			case err != nil:
				return nil, false, fmt.Errorf("apply to job %q: %w", u.ID, err)
			case !Advance(rec, u):
				s.known.add(u.ID)
				return rec, false, nil
			}
		}
		if tryCreate {
			rec, rev = u.newRecord(), 0 // revision 0: only if the key is free
			Advance(rec, u)
		}
		data, err := encodeRecord(rec)
		if err != nil {
			return nil, false, fmt.Errorf("apply to job %s: %w", u.ID, err)
		}
		err = s.update(ctx, u.ID, data, rev)
		if err == nil {
			s.known.add(u.ID)
			s.changed(rec, data)
			return rec, true, nil
		}
		if !errors.Is(err, jetstream.ErrKeyRevisionMismatch) && !errors.Is(err, jetstream.ErrKeyExists) {
			return nil, false, fmt.Errorf("apply to job %s: %w", u.ID, err)
		}
		// Another writer got in first; re-read and decide again.
		tryCreate = false
		if err := ctx.Err(); err != nil {
			return nil, false, fmt.Errorf("apply to job %s: %w", u.ID, err)
		}
	}
}

// changed tells the waiters that rec, encoded as data, is stored. Told only
// once it is stored (the PubAck came), as Redis's script publishes after its
// write: a waiter woken by the put itself could read the bucket before the
// stream stored it. This store's own waiters (an ingress in the same
// process, as in `inferq dev`) are handed the record at once; the change
// notice, which carries it too, tells every other process's.
func (s *KVStore) changed(rec *Record, data []byte) {
	rec.raw = data
	s.waiters.wake(rec.ID, rec)
	_ = s.nc.Publish(s.notify+rec.ID, data)
}

// update stores data as key's value if rev is still its last revision (0:
// if the key is new), as KeyValue.Update does, through the publish that
// reads its PubAck by hand: it is the broker's one write per job here.
// A lost race answers an error that is jetstream.ErrKeyExists.
func (s *KVStore) update(ctx context.Context, key string, data []byte, rev uint64) error {
	m := &nats.Msg{Subject: s.put + key, Data: data,
		Header: nats.Header{jetstream.ExpectedLastSubjSeqHeader: []string{strconv.FormatUint(rev, 10)}}}
	_, err := pjs.PublishMsg(ctx, s.js, m)
	return err
}

// notice wakes the waiters of the job a change notice names, handing them
// the record it carries; a notice nobody waits for is not decoded.
func (s *KVStore) notice(m *nats.Msg) {
	id, ok := strings.CutPrefix(m.Subject, s.notify)
	if !ok {
		return
	}
	s.known.add(id)
	if !s.waiters.waiting(id) {
		return
	}
	var rec *Record // an empty or unreadable notice: waiters read the bucket
	if len(m.Data) > 0 {
		if r, err := decodeRecord(m.Data); err == nil && r.ID == id {
			rec = r
		}
	}
	s.waiters.wake(id, rec)
}

// Wait implements Store. Waiters share one core-NATS subscription to the
// change notices Apply publishes, instead of a watcher (a JetStream
// consumer) each: thousands of long-polls cost no server state.
// The waiter registers before reading, so a change in between is not
// missed; a re-read every few seconds covers notices lost to a reconnect.
func (s *KVStore) Wait(ctx context.Context, id string, done func(*Record) bool, orElse Fallback) (*Record, error) {
	return s.wait(ctx, id, done, orElse, nil)
}

// wait is Wait and WaitFrom: skipRead (nil: never) says the first read may
// be left out.
func (s *KVStore) wait(ctx context.Context, id string, done func(*Record) bool, orElse Fallback, skipRead func() bool) (*Record, error) {
	if !validID(id) {
		return nil, fmt.Errorf("wait for job %q: %w", id, ErrNotFound)
	}
	select {
	case <-s.done:
		return nil, ErrClosed
	default:
	}
	safety := time.NewTicker(kvRereadEvery)
	defer safety.Stop()
	return s.waiters.waitFrom(ctx, id, done, s.Get, orElse, skipRead, s.done, safety.C)
}

// seenPerGeneration bounds the memory of KVStore.known: about two
// generations of this many job ids (some MB).
const seenPerGeneration = 1 << 16

// WaitFrom implements FromWaiter: while this store has heard of no change of
// job id (no notice, no write or read of its record), the caller's start
// record is taken as current and the first read is skipped. A notice lost
// in between costs at most one re-read interval (kvRereadEvery).
func (s *KVStore) WaitFrom(ctx context.Context, id string, done func(*Record) bool, start *Record) (*Record, error) {
	orElse := func(context.Context) (*Record, error) { return start, nil }
	return s.wait(ctx, id, done, orElse, func() bool { return !s.known.has(id) })
}

// kvRereadEvery bounds how long a waiter can miss a change whose notice was
// lost (the subscription is core NATS: at most once).
var kvRereadEvery = 2 * time.Second

// Ping implements Store by reading the bucket's status from the server.
func (s *KVStore) Ping(ctx context.Context) error {
	if _, err := s.kv.Status(ctx); err != nil {
		return fmt.Errorf("ping kv results store: %w", err)
	}
	return nil
}

// Close releases blocked waiters and closes the notices' connection. The
// JetStream connection belongs to the caller and stays open. It is safe to
// call more than once.
func (s *KVStore) Close() error {
	s.closeOnce.Do(func() {
		close(s.done)
		if s.sub != nil {
			_ = s.sub.Unsubscribe()
		}
		if s.ownConn {
			s.nc.Close()
		}
	})
	return nil
}
