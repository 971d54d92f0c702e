// Package blob keeps tensors too large to travel inside a NATS message in
// the inferq_blobs JetStream object store (a claim check): the job, batch
// and event messages carry an inferqpb.BlobRef (name, size, sha256) instead
// of the bytes. Every read checks the size and the digest, so a blob that
// was damaged or replaced is an error (ErrCorrupt), never wrong outputs.
//
// Names: a job's input n is "<job>/in/<n>" (ingress), an output is
// "<job>/<attempt>/out/<name>" (worker agent). The bucket's TTL is the
// results retention, so a blob never outlives its job record.
package blob

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"strconv"
	"sync"

	natsjs "github.com/nats-io/nats.go/jetstream"

	"github.com/inferq/inferq/schemas/inferqpb"
)

var (
	// ErrNotFound: the reference names no blob (expired with its job, or
	// never stored). No retry brings it back.
	ErrNotFound = errors.New("blob not found")
	// ErrCorrupt: the blob's bytes do not match the reference's size or
	// sha256. No retry repairs it.
	ErrCorrupt = errors.New("blob does not match its reference")
)

// Permanent reports whether err is one a retry cannot fix (ErrNotFound,
// ErrCorrupt); any other error from Get or Put is taken as transient.
func Permanent(err error) bool { return errors.Is(err, ErrNotFound) || errors.Is(err, ErrCorrupt) }

// Store puts and gets tensors' raw bytes in one object store bucket. It
// opens the bucket (which provisioning creates) on first use, so building
// one does no I/O.
type Store struct {
	js     natsjs.JetStream
	bucket string
	chunk  int

	mu  sync.Mutex
	obs natsjs.ObjectStore
}

// New is the store of bucket on js. Chunks are sized below the
// connection's max payload (bigger chunks are fewer round trips than the
// client's default 128 KiB).
func New(js natsjs.JetStream, bucket string) *Store {
	return &Store{js: js, bucket: bucket}
}

// open returns the bucket, opening it on first use; a failed open is
// tried again on the next call.
func (s *Store) open(ctx context.Context) (natsjs.ObjectStore, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.obs != nil {
		return s.obs, nil
	}
	obs, err := s.js.ObjectStore(ctx, s.bucket)
	if err != nil {
		return nil, fmt.Errorf("object store %s: %w", s.bucket, err)
	}
	s.obs = obs
	s.chunk = min(max(int(s.js.Conn().MaxPayload())/2, 128<<10), 1<<20)
	return obs, nil
}

// Digest is the hex sha256 of b, as a BlobRef carries it.
func Digest(b []byte) string {
	sum := sha256.Sum256(b)
	return hex.EncodeToString(sum[:])
}

// Put stores data under name (replacing an older blob of that name: a job
// run again writes the same bytes) and returns its reference.
func (s *Store) Put(ctx context.Context, name string, data []byte) (*inferqpb.BlobRef, error) {
	ref := &inferqpb.BlobRef{Name: name, Size: uint64(len(data)), Sha256: Digest(data)}
	obs, err := s.open(ctx)
	if err != nil {
		return nil, err
	}
	meta := natsjs.ObjectMeta{Name: name, Opts: &natsjs.ObjectMetaOptions{ChunkSize: uint32(s.chunk)}}
	if _, err := obs.Put(ctx, meta, bytes.NewReader(data)); err != nil {
		return nil, fmt.Errorf("put blob %s (%d bytes): %w", name, len(data), err)
	}
	return ref, nil
}

// Get reads the blob ref names and checks its size and digest. It reads at
// most ref.Size bytes (plus one, to see a longer blob), whatever the
// bucket holds.
func (s *Store) Get(ctx context.Context, ref *inferqpb.BlobRef) ([]byte, error) {
	if ref.GetName() == "" {
		return nil, fmt.Errorf("blob reference without a name: %w", ErrNotFound)
	}
	obs, err := s.open(ctx)
	if err != nil {
		return nil, err
	}
	res, err := obs.Get(ctx, ref.Name)
	if errors.Is(err, natsjs.ErrObjectNotFound) {
		return nil, fmt.Errorf("blob %s: %w", ref.Name, ErrNotFound)
	}
	if err != nil {
		return nil, fmt.Errorf("get blob %s: %w", ref.Name, err)
	}
	defer res.Close()
	if info, err := res.Info(); err == nil && info.Size != ref.Size {
		return nil, fmt.Errorf("blob %s: %d bytes, its reference says %d: %w", ref.Name, info.Size, ref.Size, ErrCorrupt)
	}
	data, err := io.ReadAll(io.LimitReader(res, int64(ref.Size)+1))
	switch {
	case errors.Is(err, natsjs.ErrDigestMismatch):
		return nil, fmt.Errorf("blob %s: stored digest mismatch: %w", ref.Name, ErrCorrupt)
	case err != nil:
		return nil, fmt.Errorf("read blob %s: %w", ref.Name, err)
	case uint64(len(data)) != ref.Size:
		return nil, fmt.Errorf("blob %s: %d bytes, its reference says %d: %w", ref.Name, len(data), ref.Size, ErrCorrupt)
	}
	if got := Digest(data); got != ref.Sha256 {
		return nil, fmt.Errorf("blob %s: sha256 %s, its reference says %s: %w", ref.Name, got, ref.Sha256, ErrCorrupt)
	}
	return data, nil
}

// Delete removes the blob name; a blob already gone is no error.
func (s *Store) Delete(ctx context.Context, name string) error {
	obs, err := s.open(ctx)
	if err != nil {
		return err
	}
	if err := obs.Delete(ctx, name); err != nil && !errors.Is(err, natsjs.ErrObjectNotFound) {
		return fmt.Errorf("delete blob %s: %w", name, err)
	}
	return nil
}

// Offload moves t's bytes to the bucket under name when they are more than
// threshold bytes, leaving a reference in t. Smaller tensors, and tensors
// already by reference, are left alone.
func (s *Store) Offload(ctx context.Context, t *inferqpb.Tensor, name string, threshold int64) error {
	if t.Ref != nil || int64(len(t.Data)) <= threshold {
		return nil
	}
	ref, err := s.Put(ctx, name, t.Data)
	if err != nil {
		return fmt.Errorf("tensor %q: %w", t.Name, err)
	}
	t.Ref, t.Data = ref, nil
	return nil
}

// Resolve replaces t's reference, if any, with its checked bytes.
func (s *Store) Resolve(ctx context.Context, t *inferqpb.Tensor) error {
	if t.Ref == nil {
		return nil
	}
	data, err := s.Get(ctx, t.Ref)
	if err != nil {
		return fmt.Errorf("tensor %q: %w", t.Name, err)
	}
	t.Data, t.Ref = data, nil
	return nil
}

// InputName is the blob name of a job's input n.
func InputName(job string, n int) string { return job + "/in/" + strconv.Itoa(n) }

// OutputName is the blob name of a job's output in one attempt: a replay
// writes its own, so it never replaces what an earlier record refers to.
func OutputName(job string, attempt uint32, output string) string {
	return job + "/" + strconv.FormatUint(uint64(attempt), 10) + "/out/" + output
}

// HasRef reports whether any of ts travels by reference.
func HasRef(ts []*inferqpb.Tensor) bool {
	for _, t := range ts {
		if t.GetRef() != nil {
			return true
		}
	}
	return false
}
