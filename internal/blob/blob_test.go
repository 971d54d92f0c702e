package blob_test

import (
	"bytes"
	"errors"
	"testing"
	"time"

	"github.com/inferq/inferq/internal/blob"
	"github.com/inferq/inferq/internal/provision"
	"github.com/inferq/inferq/internal/testutil"
	"github.com/inferq/inferq/pkg/jetstream"
	"github.com/inferq/inferq/schemas/inferqpb"
)

func provisioned(t *testing.T) (*blob.Store, *testutil.NATS, jetstream.Topology) {
	t.Helper()
	n := testutil.StartNATS(t)
	topo := jetstream.DefaultTopology()
	topo.BlobsTTL = 3 * time.Hour
	if err := provision.All(testutil.Context(t), n.JS, topo, nil); err != nil {
		t.Fatal(err)
	}
	return blob.New(n.JS, topo.BlobsBucket()), n, topo
}

// TestBucketProvisioned: the bucket exists with the results retention as
// its TTL and the streams' replicas.
func TestBucketProvisioned(t *testing.T) {
	_, n, topo := provisioned(t)
	obs, err := n.JS.ObjectStore(testutil.Context(t), "inferq_blobs")
	if err != nil {
		t.Fatal(err)
	}
	st, err := obs.Status(testutil.Context(t))
	if err != nil {
		t.Fatal(err)
	}
	if st.TTL() != topo.BlobsTTL || st.Replicas() != topo.Replicas {
		t.Fatalf("bucket TTL %v replicas %d, want %v and %d", st.TTL(), st.Replicas(), topo.BlobsTTL, topo.Replicas)
	}
}

func TestPutGetChecksDigest(t *testing.T) {
	s, _, _ := provisioned(t)
	ctx := testutil.Context(t)
	data := make([]byte, 3<<20+17) // several chunks and a partial one
	for i := range data {
		data[i] = byte(i * 7)
	}
	ref, err := s.Put(ctx, blob.InputName("job1", 0), data)
	if err != nil {
		t.Fatal(err)
	}
	if ref.Size != uint64(len(data)) || ref.Sha256 != blob.Digest(data) || ref.Name != "job1/in/0" {
		t.Fatalf("ref %+v", ref)
	}
	got, err := s.Get(ctx, ref)
	if err != nil || !bytes.Equal(got, data) {
		t.Fatalf("get: %d bytes, %v; want the %d bytes put", len(got), err, len(data))
	}
	tests := []struct {
		name string
		ref  *inferqpb.BlobRef
		want error
	}{
		{"wrong digest", &inferqpb.BlobRef{Name: ref.Name, Size: ref.Size, Sha256: blob.Digest([]byte("other"))}, blob.ErrCorrupt},
		{"wrong size", &inferqpb.BlobRef{Name: ref.Name, Size: ref.Size - 1, Sha256: ref.Sha256}, blob.ErrCorrupt},
		{"missing", &inferqpb.BlobRef{Name: "job2/in/0", Size: 1, Sha256: ref.Sha256}, blob.ErrNotFound},
		{"no name", &inferqpb.BlobRef{}, blob.ErrNotFound},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			_, err := s.Get(ctx, tc.ref)
			if !errors.Is(err, tc.want) || !blob.Permanent(err) {
				t.Fatalf("get: %v, want %v", err, tc.want)
			}
		})
	}
}

func TestOffloadResolve(t *testing.T) {
	s, _, _ := provisioned(t)
	ctx := testutil.Context(t)
	small := &inferqpb.Tensor{Name: "A", Data: make([]byte, 100)}
	big := &inferqpb.Tensor{Name: "B", Data: bytes.Repeat([]byte{1, 2, 3, 4}, 1000)}
	for i, tn := range []*inferqpb.Tensor{small, big} {
		if err := s.Offload(ctx, tn, blob.InputName("j", i), 1000); err != nil {
			t.Fatal(err)
		}
	}
	if small.Ref != nil || len(small.Data) != 100 {
		t.Fatalf("small tensor offloaded: %+v", small)
	}
	if big.Ref == nil || big.Data != nil || !blob.HasRef([]*inferqpb.Tensor{small, big}) {
		t.Fatalf("big tensor not offloaded: ref %v, %d bytes", big.Ref, len(big.Data))
	}
	if err := s.Resolve(ctx, big); err != nil || big.Ref != nil || !bytes.Equal(big.Data, bytes.Repeat([]byte{1, 2, 3, 4}, 1000)) {
		t.Fatalf("resolve: %v, ref %v", err, big.Ref)
	}
}
