package tensor

import (
	"bytes"
	"encoding/json"
	"errors"
	"math"
	"reflect"
	"strings"
	"testing"
)

var allTypes = []DataType{Bool, Uint8, Uint16, Uint32, Uint64, Int8, Int16, Int32, Int64, FP16, BF16, FP32, FP64, Bytes}

// fuzzShape turns bytes into a small shape; signed bytes allow negative dims.
func fuzzShape(b []byte) []int64 {
	if len(b) > 6 {
		b = b[:6]
	}
	s := make([]int64, len(b))
	for i, c := range b {
		s[i] = int64(int8(c))
	}
	return s
}

func sentinel(err error) bool {
	for _, s := range []error{ErrDatatype, ErrShape, ErrDataLength, ErrValue, ErrIncompatible} {
		if errors.Is(err, s) {
			return true
		}
	}
	return false
}

func FuzzFromJSON(f *testing.F) {
	seeds := []struct {
		dt    string
		shape []byte
		data  string
	}{
		{"INT32", []byte{2, 2}, `[[1,2],[3,4]]`},
		{"INT64", []byte{2}, `[-9223372036854775808,1e3]`},
		{"UINT8", []byte{1}, `[300]`},
		{"FP16", []byte{3}, `[0.1,65504,-0]`},
		{"BF16", []byte{1, 1}, `[[1.5e-40]]`},
		{"FP32", []byte{}, `3.5`},
		{"FP64", []byte{2}, `[1e308, 5e-324]`},
		{"BOOL", []byte{2}, `[true,false]`},
		{"BYTES", []byte{2}, `["a\"b","\ud83d\ude00\u0000"]`},
		{"BYTES", []byte{1}, "[\"\xff\xfe\"]"},
		{"INT32", []byte{0x80}, `[]`},
		{"UINT64", []byte{1}, `[18446744073709551615.000e0]`},
	}
	for _, s := range seeds {
		f.Add(s.dt, s.shape, []byte(s.data))
	}
	for _, dt := range allTypes {
		f.Add(string(dt), []byte{1, 2}, []byte(`[[1,0]]`))
	}
	f.Fuzz(func(t *testing.T, dt string, shapeBytes, data []byte) {
		j := &JSON{Name: "f", Datatype: dt, Shape: fuzzShape(shapeBytes), Data: data}
		raw, err := FromJSON(j)
		if err != nil {
			if !sentinel(err) {
				t.Fatalf("error without sentinel: %v", err)
			}
			return
		}
		if !json.Valid(data) {
			t.Fatalf("accepted invalid JSON %q", data)
		}
		if err := raw.Validate(); err != nil {
			t.Fatalf("decoded tensor invalid: %v", err)
		}
		out, err := ToJSON(raw)
		if err != nil {
			t.Fatalf("ToJSON: %v", err)
		}
		if !json.Valid(out.Data) {
			t.Fatalf("ToJSON produced invalid JSON %q", out.Data)
		}
		back, err := FromJSON(out)
		if err != nil {
			t.Fatalf("FromJSON(ToJSON): %v (json %s)", err, out.Data)
		}
		if !bytes.Equal(back.Data, raw.Data) || !reflect.DeepEqual(back.Shape, raw.Shape) || back.Datatype != raw.Datatype {
			t.Fatalf("round trip changed data: %x -> %s -> %x", raw.Data, out.Data, back.Data)
		}
	})
}

func FuzzValidate(f *testing.F) {
	f.Add(uint8(6), []byte{2, 2}, i32s(1, 2, 3, 4))
	f.Add(uint8(13), []byte{2}, strs("ab", "\xff"))
	f.Add(uint8(13), []byte{1}, []byte{0xff, 0xff, 0xff, 0xff})
	f.Add(uint8(9), []byte{3}, u16s(0x7C00, 0x0001, 0x8000))
	f.Add(uint8(10), []byte{1}, u16s(0xFFFF))
	f.Add(uint8(11), []byte{}, f32s(float32(math.NaN())))
	f.Fuzz(func(t *testing.T, dtIdx uint8, shapeBytes, data []byte) {
		dt := allTypes[int(dtIdx)%len(allTypes)]
		tt := &Tensor{Name: "v", Datatype: dt, Shape: fuzzShape(shapeBytes), Data: data}
		if err := tt.Validate(); err != nil {
			if !sentinel(err) {
				t.Fatalf("error without sentinel: %v", err)
			}
			return
		}
		// Whatever validates must be safe to split, unpad and encode.
		if len(tt.Shape) > 0 {
			if _, err := Split(tt, []Range{{0, tt.Shape[0]}, {tt.Shape[0] / 2, tt.Shape[0]}}); err != nil {
				t.Fatalf("Split: %v", err)
			}
			half := make([]int64, len(tt.Shape))
			for i, d := range tt.Shape {
				half[i] = (d + 1) / 2
			}
			u, err := Unpad(tt, half)
			if err != nil {
				t.Fatalf("Unpad: %v", err)
			}
			if err := u.Validate(); err != nil {
				t.Fatalf("Unpad result invalid: %v", err)
			}
		}
		j, err := ToJSON(tt)
		if err != nil {
			if !errors.Is(err, ErrValue) || !dt.isFloat() {
				t.Fatalf("ToJSON: %v", err)
			}
			return
		}
		if !json.Valid(j.Data) {
			t.Fatalf("invalid JSON %q", j.Data)
		}
		back, err := FromJSON(j)
		if err != nil {
			t.Fatalf("FromJSON(ToJSON): %v (json %s)", err, j.Data)
		}
		// Raw -> JSON -> raw is exact except where JSON cannot carry the
		// value: non-0/1 BOOL bytes and invalid UTF-8 in BYTES.
		if dt != Bool && dt != Bytes && !bytes.Equal(back.Data, data) {
			t.Fatalf("round trip %x -> %s -> %x", data, j.Data, back.Data)
		}
	})
}

// fuzzParts builds up to 4 tensors of one datatype and rank from bytes.
func fuzzParts(dt DataType, rank int, spec []byte) []*Tensor {
	var parts []*Tensor
	for len(spec) >= rank && len(parts) < 4 {
		shape := make([]int64, rank)
		n := int64(1)
		for i := range shape {
			shape[i] = int64(spec[i] % 4)
			n *= shape[i]
		}
		spec = spec[rank:]
		p := &Tensor{Name: "p", Datatype: dt, Shape: shape}
		for k := int64(0); k < n; k++ {
			if dt == Bytes {
				// Varying lengths (0-2) with the part index as content.
				p.Data = append(p.Data, strs(strings.Repeat(string(rune('a'+len(parts))), int(k%3)))...)
			} else {
				for b := 0; b < dt.ElemSize(); b++ {
					p.Data = append(p.Data, byte(k+1))
				}
			}
		}
		parts = append(parts, p)
	}
	return parts
}

func FuzzConcat(f *testing.F) {
	f.Add(false, uint8(2), []byte{1, 2, 2, 2})
	f.Add(true, uint8(3), []byte{1, 1, 3, 2, 3, 0, 1, 0, 2})
	f.Add(true, uint8(1), []byte{3, 0, 2})
	f.Fuzz(func(t *testing.T, bytesType bool, rank uint8, spec []byte) {
		r := int(rank%4) + 1
		dt := Int16
		if bytesType {
			dt = Bytes
		}
		parts := fuzzParts(dt, r, spec)
		for _, ragged := range []bool{false, true} {
			b, err := Concat("c", parts, ragged)
			if err != nil {
				if !sentinel(err) {
					t.Fatalf("error without sentinel: %v", err)
				}
				continue
			}
			if err := b.Tensor.Validate(); err != nil {
				t.Fatalf("batched tensor invalid: %v", err)
			}
			if b.Mask != nil {
				if err := b.Mask.Validate(); err != nil || !reflect.DeepEqual(b.Mask.Shape, b.Tensor.Shape) {
					t.Fatalf("bad mask: %v %v", err, b.Mask.Shape)
				}
			}
			outs, err := Split(b.Tensor, b.Rows)
			if err != nil {
				t.Fatalf("Split: %v", err)
			}
			for i, o := range outs {
				u, err := Unpad(o, b.Shapes[i])
				if err != nil {
					t.Fatalf("Unpad: %v", err)
				}
				if !bytes.Equal(u.Data, parts[i].Data) || !reflect.DeepEqual(u.Shape, parts[i].Shape) {
					t.Fatalf("part %d: %v %x, want %v %x", i, u.Shape, u.Data, parts[i].Shape, parts[i].Data)
				}
			}
		}
	})
}

func FuzzSplit(f *testing.F) {
	f.Add(true, []byte{3, 2}, []byte{0, 1, 1, 3, 2, 2})
	f.Add(false, []byte{4}, []byte{0, 4, 3, 1})
	f.Fuzz(func(t *testing.T, bytesType bool, shapeBytes, rangeBytes []byte) {
		dt := Int32
		if bytesType {
			dt = Bytes
		}
		parts := fuzzParts(dt, max(1, min(len(shapeBytes), 3)), shapeBytes)
		if len(parts) == 0 {
			return
		}
		src := parts[0]
		var rows []Range
		for i := 0; i+1 < len(rangeBytes) && len(rows) < 8; i += 2 {
			rows = append(rows, Range{int64(int8(rangeBytes[i])), int64(int8(rangeBytes[i+1]))})
		}
		outs, err := Split(src, rows)
		if err != nil {
			if !errors.Is(err, ErrShape) {
				t.Fatalf("unexpected error %v", err)
			}
			return
		}
		for i, o := range outs {
			if err := o.Validate(); err != nil {
				t.Fatalf("output %d invalid: %v", i, err)
			}
			// Each output equals the elementwise slice of the source.
			r := rows[i]
			perRow := int64(1)
			for _, d := range src.Shape[1:] {
				perRow *= d
			}
			var want []byte
			if dt == Bytes {
				off := 0
				for e := int64(0); e < r.End*perRow; e++ {
					end := nextBytesElem(src.Data, off)
					if e >= r.Start*perRow {
						want = append(want, src.Data[off:end]...)
					}
					off = end
				}
			} else {
				want = src.Data[r.Start*perRow*4 : r.End*perRow*4]
			}
			if !bytes.Equal(o.Data, want) {
				t.Fatalf("output %d = %x, want %x", i, o.Data, want)
			}
		}
	})
}
