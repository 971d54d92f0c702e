package client_test

import (
	"bytes"
	"encoding/binary"
	"math"
	"math/rand/v2"
	"testing"
	"time"

	"github.com/inferq/inferq/internal/stack"
	"github.com/inferq/inferq/pkg/client"
	"github.com/inferq/inferq/pkg/tensor"
)

func int32Tensor(name string, vs ...int32) []*tensor.Tensor {
	data := make([]byte, 4*len(vs))
	for k, v := range vs {
		binary.LittleEndian.PutUint32(data[4*k:], uint32(v))
	}
	return []*tensor.Tensor{{Name: name, Datatype: tensor.Int32, Shape: []int64{1, int64(len(vs))}, Data: data}}
}

// sample returns n elements of dt in raw form: the type's extremes and
// corners (zeros of both signs, subnormals, the largest finite values),
// then random bit patterns. Floats are kept finite (NaN and the infinities
// have no JSON form); BYTES are valid UTF-8, as JSON strings must be.
func sample(dt tensor.DataType, n int, rng *rand.Rand) []byte {
	es := dt.ElemSize()
	var out []byte
	switch dt {
	case tensor.Bool:
		for k := range n {
			out = append(out, byte(k%2))
		}
		return out
	case tensor.Bytes:
		words := []string{"", "a", "héllo wörld", "日本語", "tab\there \"quoted\" back\\slash", "\x00\x01\u2028", "🙂🙂"}
		for k := range n {
			w := words[k%len(words)]
			out = binary.LittleEndian.AppendUint32(out, uint32(len(w)))
			out = append(out, w...)
		}
		return out
	}
	finite := func(bits uint64) bool {
		switch dt {
		case tensor.FP16:
			return bits&0x7c00 != 0x7c00
		case tensor.BF16:
			return bits&0x7f80 != 0x7f80
		case tensor.FP32:
			f := math.Float32frombits(uint32(bits))
			return !math.IsNaN(float64(f)) && !math.IsInf(float64(f), 0)
		case tensor.FP64:
			f := math.Float64frombits(bits)
			return !math.IsNaN(f) && !math.IsInf(f, 0)
		}
		return true
	}
	put := func(bits uint64) {
		var b [8]byte
		binary.LittleEndian.PutUint64(b[:], bits)
		out = append(out, b[:es]...)
	}
	top := uint64(1)<<(8*es-1) | (uint64(1)<<(8*es-1) - 1) // all ones
	if es == 8 {
		top = math.MaxUint64
	}
	sign := uint64(1) << (8*es - 1)
	corners := []uint64{0, 1, top, sign, sign - 1, sign + 1, top - 1}
	for _, c := range corners {
		if finite(c) && len(out) < n*es {
			put(c)
		}
	}
	for len(out) < n*es {
		if b := rng.Uint64() & top; finite(b) {
			put(b)
		}
	}
	return out
}

// TestTensorRoundTrip: a tensor of every OIP datatype goes through the
// `identity` test model and comes back bit for bit.
func TestTensorRoundTrip(t *testing.T) {
	url := startStack(t, false, stack.All, nil)
	c := newClient(t, url)
	ctx := ctxFor(t, 60*time.Second)
	rng := rand.New(rand.NewPCG(22, 1))
	types := []tensor.DataType{tensor.Bool, tensor.Uint8, tensor.Uint16, tensor.Uint32, tensor.Uint64, tensor.Int8,
		tensor.Int16, tensor.Int32, tensor.Int64, tensor.FP16, tensor.BF16, tensor.FP32, tensor.FP64, tensor.Bytes}
	for _, dt := range types {
		t.Run(string(dt), func(t *testing.T) {
			const rows, cols = 2, 64
			in := &tensor.Tensor{Name: "INPUT0", Datatype: dt, Shape: []int64{rows, cols}, Data: sample(dt, rows*cols, rng)}
			sub, err := c.Submit(ctx, "identity", client.Infer{Inputs: []*tensor.Tensor{in}}, client.WithPreferWait(30*time.Second))
			if err != nil {
				t.Fatal(err)
			}
			job := sub.Job
			if job == nil {
				if job, err = c.Wait(ctx, sub.ID); err != nil {
					t.Fatal(err)
				}
			}
			if job.Status != client.Succeeded {
				t.Fatalf("job %s: %s %+v", job.ID, job.Status, job.Error)
			}
			out := job.Result.Output("OUTPUT0")
			if out == nil {
				t.Fatalf("no OUTPUT0 in %s", job.Raw)
			}
			if out.Datatype != dt || len(out.Shape) != 2 || out.Shape[0] != rows || out.Shape[1] != cols {
				t.Errorf("output %s %v, want %s [%d %d]", out.Datatype, out.Shape, dt, rows, cols)
			}
			if !bytes.Equal(out.Data, in.Data) {
				for k := range min(len(out.Data), len(in.Data)) {
					if out.Data[k] != in.Data[k] {
						t.Fatalf("%s: byte %d differs (%#x, sent %#x); %d bytes back for %d sent", dt, k, out.Data[k], in.Data[k], len(out.Data), len(in.Data))
					}
				}
				t.Fatalf("%s: %d bytes back for %d sent", dt, len(out.Data), len(in.Data))
			}
		})
	}
}
