package wire

import (
	"bytes"
	"encoding/binary"
	"encoding/json"
	"fmt"
	"math"
	"testing"

	"github.com/inferq/inferq/pkg/tensor"
	"github.com/inferq/inferq/schemas/inferqpb"
)

// responseJSONReflect is ResponseJSON as it was, through json.Marshal: the
// reference the append-based writer must match byte for byte.
func responseJSONReflect(model, version, id string, outputs []*inferqpb.Tensor) (json.RawMessage, error) {
	r := Response{ModelName: model, ModelVersion: version, ID: id, Outputs: make([]any, 0, len(outputs))}
	for _, o := range outputs {
		if ref := o.GetRef(); ref != nil {
			r.Outputs = append(r.Outputs, &RefJSON{Name: o.GetName(), Shape: o.GetShape(), Datatype: o.GetDatatype(),
				Parameters: map[string]BlobRef{BlobParam: {Name: ref.Name, Size: ref.Size, Sha256: ref.Sha256}}})
			continue
		}
		j, err := tensor.ToJSON(FromProto(o))
		if err != nil {
			return nil, fmt.Errorf("output %q: %w", o.GetName(), err)
		}
		r.Outputs = append(r.Outputs, j)
	}
	b, err := json.Marshal(r)
	if err != nil {
		return nil, fmt.Errorf("encode response: %w", err)
	}
	return b, nil
}

func le(size int, vals ...uint64) []byte {
	b := make([]byte, 0, size*len(vals))
	for _, v := range vals {
		switch size {
		case 1:
			b = append(b, byte(v))
		case 2:
			b = binary.LittleEndian.AppendUint16(b, uint16(v))
		case 4:
			b = binary.LittleEndian.AppendUint32(b, uint32(v))
		case 8:
			b = binary.LittleEndian.AppendUint64(b, v)
		}
	}
	return b
}

func bytesData(elems ...string) []byte {
	var b []byte
	for _, e := range elems {
		b = binary.LittleEndian.AppendUint32(b, uint32(len(e)))
		b = append(b, e...)
	}
	return b
}

// responseCases cover each datatype, outputs by reference, escapes and the
// empty cases.
func responseCases() []struct {
	name               string
	model, version, id string
	outputs            []*inferqpb.Tensor
	wantErr            bool
} {
	f32 := func(fs ...float32) []uint64 {
		var v []uint64
		for _, f := range fs {
			v = append(v, uint64(math.Float32bits(f)))
		}
		return v
	}
	f64 := func(fs ...float64) []uint64 {
		var v []uint64
		for _, f := range fs {
			v = append(v, math.Float64bits(f))
		}
		return v
	}
	neg := func(v int64) uint64 { return uint64(v) }
	ref := &inferqpb.BlobRef{Name: "01JQ/1/out/OUTPUT0", Size: 1 << 40, Sha256: "e3b0c44298fc1c149afbf4c8996fb924"}
	return []struct {
		name               string
		model, version, id string
		outputs            []*inferqpb.Tensor
		wantErr            bool
	}{
		{name: "no outputs", model: "simple", version: "1", id: "r1"},
		{name: "empty outputs", model: "simple", id: "r1", outputs: []*inferqpb.Tensor{}},
		{name: "escapes", model: "<m>&\"\\\u2028", version: "v\n", id: "\xff\x00", outputs: []*inferqpb.Tensor{
			{Name: "out<&>\"", Datatype: "BOOL", Shape: []int64{3}, Data: []byte{0, 1, 7}}}},
		{name: "every datatype", model: "simple", version: "1", id: "01JQ7Z3XK9M2B4C6D8E0F1G2H3", outputs: []*inferqpb.Tensor{
			{Name: "bool", Datatype: "BOOL", Shape: []int64{2}, Data: []byte{1, 0}},
			{Name: "u8", Datatype: "UINT8", Shape: []int64{1, 3}, Data: []byte{0, 128, 255}},
			{Name: "u16", Datatype: "UINT16", Shape: []int64{2}, Data: le(2, 0, 65535)},
			{Name: "u32", Datatype: "UINT32", Shape: []int64{2}, Data: le(4, 1, math.MaxUint32)},
			{Name: "u64", Datatype: "UINT64", Shape: []int64{2}, Data: le(8, 0, math.MaxUint64)},
			{Name: "i8", Datatype: "INT8", Shape: []int64{2}, Data: le(1, neg(-128), 127)},
			{Name: "i16", Datatype: "INT16", Shape: []int64{2}, Data: le(2, neg(-32768), 32767)},
			{Name: "i32", Datatype: "INT32", Shape: []int64{1, 4}, Data: le(4, 2, 4, neg(-6), math.MaxInt32)},
			{Name: "i64", Datatype: "INT64", Shape: []int64{2}, Data: le(8, neg(math.MinInt64), math.MaxInt64)},
			{Name: "fp16", Datatype: "FP16", Shape: []int64{3}, Data: le(2, 0x3c00, 0xc000, 0x7bff)},
			{Name: "bf16", Datatype: "BF16", Shape: []int64{2}, Data: le(2, 0x3f80, 0x4049)},
			{Name: "fp32", Datatype: "FP32", Shape: []int64{4}, Data: le(4, f32(1.5, -0.1, 1e30, 1e-40)...)},
			{Name: "fp64", Datatype: "FP64", Shape: []int64{4}, Data: le(8, f64(3.141592653589793, -0, 1e21, 5e-324)...)},
			{Name: "bytes", Datatype: "BYTES", Shape: []int64{3}, Data: bytesData("plain", "<é&>\n\"", "\xff\u2029")},
			{Name: "empty", Datatype: "FP32", Shape: []int64{0, 4}, Data: nil},
		}},
		{name: "scalar shape", model: "m", id: "s", outputs: []*inferqpb.Tensor{
			{Name: "x", Datatype: "INT32", Shape: nil, Data: le(4, 9)}}},
		{name: "refs", model: "identity", version: "2", id: "r", outputs: []*inferqpb.Tensor{
			{Name: "OUTPUT0", Datatype: "FP32", Shape: []int64{1, 1 << 20}, Ref: ref},
			{Name: "OUTPUT1", Datatype: "INT32", Shape: []int64{2}, Data: le(4, 1, 2)},
			{Name: "nil shape", Datatype: "BYTES", Ref: &inferqpb.BlobRef{}},
			{Name: "empty shape", Datatype: "BYTES", Shape: []int64{}, Ref: &inferqpb.BlobRef{Name: "<&>"}},
		}},
		{name: "bad length", model: "m", id: "x", wantErr: true, outputs: []*inferqpb.Tensor{
			{Name: "ok", Datatype: "INT32", Shape: []int64{1}, Data: le(4, 1)},
			{Name: "short", Datatype: "INT32", Shape: []int64{2}, Data: le(4, 1)}}},
		{name: "bad datatype", model: "m", id: "x", wantErr: true, outputs: []*inferqpb.Tensor{
			{Name: "d", Datatype: "FP8", Shape: []int64{1}, Data: []byte{1}}}},
		{name: "not finite", model: "m", id: "x", wantErr: true, outputs: []*inferqpb.Tensor{
			{Name: "nan", Datatype: "FP32", Shape: []int64{1}, Data: le(4, f32(float32(math.NaN()))...)}}},
		{name: "nil output", model: "m", id: "x", wantErr: true, outputs: []*inferqpb.Tensor{nil}},
	}
}

// TestResponseJSONMatchesMarshal: the append-based writer writes what
// json.Marshal wrote, byte for byte, and fails where it failed.
func TestResponseJSONMatchesMarshal(t *testing.T) {
	for _, tc := range responseCases() {
		t.Run(tc.name, func(t *testing.T) {
			want, wantErr := responseJSONReflect(tc.model, tc.version, tc.id, tc.outputs)
			got, err := ResponseJSON(tc.model, tc.version, tc.id, tc.outputs)
			if (wantErr != nil) != tc.wantErr || (err != nil) != tc.wantErr {
				t.Fatalf("error %v, json.Marshal path error %v, want error %v", err, wantErr, tc.wantErr)
			}
			if tc.wantErr {
				if err.Error() != wantErr.Error() {
					t.Fatalf("error %q, want %q", err, wantErr)
				}
				return
			}
			if !bytes.Equal(got, want) {
				t.Fatalf("ResponseJSON:\n got %s\nwant %s", got, want)
			}
			if !json.Valid(got) {
				t.Fatalf("ResponseJSON wrote invalid JSON: %s", got)
			}
		})
	}
}

// FuzzResponseJSON: for any names and data, the writer agrees with the
// json.Marshal path (same bytes, or both fail).
func FuzzResponseJSON(f *testing.F) {
	f.Add("simple", "1", "id", "OUTPUT0", uint8(7), int64(4), []byte("0123456789abcdef"), false)
	f.Add("<&>", "", "\xff", "\u2028", uint8(13), int64(2), bytesData("a", "<b>"), false)
	f.Add("m", "v", "i", "o", uint8(0), int64(-1), []byte{}, true)
	datatypes := []string{"BOOL", "UINT8", "UINT16", "UINT32", "UINT64", "INT8", "INT16", "INT32", "INT64",
		"FP16", "BF16", "FP32", "FP64", "BYTES", "BAD"}
	f.Fuzz(func(t *testing.T, model, version, id, name string, dt uint8, dim int64, data []byte, byRef bool) {
		o := &inferqpb.Tensor{Name: name, Datatype: datatypes[int(dt)%len(datatypes)], Shape: []int64{dim}, Data: data}
		if byRef {
			o.Ref = &inferqpb.BlobRef{Name: name, Size: uint64(dim), Sha256: model}
		}
		outputs := []*inferqpb.Tensor{o, {Name: "fixed", Datatype: "INT8", Shape: []int64{1}, Data: []byte{0x80}}}
		want, wantErr := responseJSONReflect(model, version, id, outputs)
		got, err := ResponseJSON(model, version, id, outputs)
		if (err == nil) != (wantErr == nil) || !bytes.Equal(got, want) {
			t.Fatalf("ResponseJSON = %s, %v; json.Marshal path = %s, %v", got, err, want, wantErr)
		}
	})
}

// BenchmarkResponseJSON compares json.Marshal with the append-based writer
// on a `simple` job's response (two INT32 [1,16] outputs).
func BenchmarkResponseJSON(b *testing.B) {
	vals := make([]uint64, 16)
	for i := range vals {
		vals[i] = uint64(uint32(int32(i*1048573 - 8000000)))
	}
	outputs := []*inferqpb.Tensor{
		{Name: "OUTPUT0", Datatype: "INT32", Shape: []int64{1, 16}, Data: le(4, vals...)},
		{Name: "OUTPUT1", Datatype: "INT32", Shape: []int64{1, 16}, Data: le(4, vals...)},
	}
	out, err := ResponseJSON("simple", "1", "01JQ7Z3XK9M2B4C6D8E0F1G2H3", outputs)
	if err != nil {
		b.Fatal(err)
	}
	b.Logf("response: %d bytes", len(out))
	for _, bc := range []struct {
		name string
		fn   func(model, version, id string, outputs []*inferqpb.Tensor) (json.RawMessage, error)
	}{{"json", responseJSONReflect}, {"append", ResponseJSON}} {
		b.Run(bc.name, func(b *testing.B) {
			b.ReportAllocs()
			for b.Loop() {
				if _, err := bc.fn("simple", "1", "01JQ7Z3XK9M2B4C6D8E0F1G2H3", outputs); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}
