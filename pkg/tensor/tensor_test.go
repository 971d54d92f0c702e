package tensor

import (
	"bytes"
	"errors"
	"testing"
)

func TestParseDataType(t *testing.T) {
	tests := []struct {
		name    string
		in      string
		want    DataType
		size    int
		wantErr error
	}{
		{name: "bool", in: "BOOL", want: Bool, size: 1},
		{name: "uint8", in: "UINT8", want: Uint8, size: 1},
		{name: "uint16", in: "UINT16", want: Uint16, size: 2},
		{name: "uint32", in: "UINT32", want: Uint32, size: 4},
		{name: "uint64", in: "UINT64", want: Uint64, size: 8},
		{name: "int8", in: "INT8", want: Int8, size: 1},
		{name: "int16", in: "INT16", want: Int16, size: 2},
		{name: "int32", in: "INT32", want: Int32, size: 4},
		{name: "int64", in: "INT64", want: Int64, size: 8},
		{name: "fp16", in: "FP16", want: FP16, size: 2},
		{name: "bf16", in: "BF16", want: BF16, size: 2},
		{name: "fp32", in: "FP32", want: FP32, size: 4},
		{name: "fp64", in: "FP64", want: FP64, size: 8},
		{name: "bytes", in: "BYTES", want: Bytes, size: 0},
		{name: "lowercase", in: "int32", wantErr: ErrDatatype},
		{name: "empty", in: "", wantErr: ErrDatatype},
		{name: "unknown", in: "FP8", wantErr: ErrDatatype},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			got, err := ParseDataType(tc.in)
			if !errors.Is(err, tc.wantErr) {
				t.Fatalf("err = %v, want %v", err, tc.wantErr)
			}
			if err != nil {
				return
			}
			if got != tc.want || !got.Valid() || got.ElemSize() != tc.size {
				t.Fatalf("got %q valid=%v size=%d, want %q size %d", got, got.Valid(), got.ElemSize(), tc.want, tc.size)
			}
		})
	}
}

func TestNumElements(t *testing.T) {
	tests := []struct {
		name  string
		shape []int64
		want  int64
	}{
		{name: "scalar", shape: []int64{}, want: 1},
		{name: "nil", shape: nil, want: 1},
		{name: "vector", shape: []int64{7}, want: 7},
		{name: "matrix", shape: []int64{2, 3, 4}, want: 24},
		{name: "zero", shape: []int64{2, 0, 5}, want: 0},
		{name: "zero with huge", shape: []int64{1 << 62, 1 << 62, 0}, want: 0},
		{name: "negative", shape: []int64{2, -1}, want: -1},
		{name: "overflow", shape: []int64{1 << 32, 1 << 32}, want: -1},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			tt := &Tensor{Shape: tc.shape}
			if got := tt.NumElements(); got != tc.want {
				t.Fatalf("NumElements = %d, want %d", got, tc.want)
			}
		})
	}
}

func TestValidate(t *testing.T) {
	tests := []struct {
		name    string
		t       *Tensor
		wantErr error
		wantMsg string
	}{
		{name: "ok int32", t: &Tensor{Name: "x", Datatype: Int32, Shape: []int64{1, 2}, Data: i32s(1, 2)}},
		{name: "ok scalar", t: &Tensor{Name: "x", Datatype: FP64, Shape: []int64{}, Data: f64s(1)}},
		{name: "ok empty", t: &Tensor{Name: "x", Datatype: FP32, Shape: []int64{0, 3}}},
		{name: "ok bytes", t: &Tensor{Name: "x", Datatype: Bytes, Shape: []int64{3}, Data: strs("a", "", "ccc")}},
		{name: "ok bytes empty", t: &Tensor{Name: "x", Datatype: Bytes, Shape: []int64{0}}},
		{name: "nil", t: nil, wantErr: ErrShape},
		{name: "unknown datatype", t: &Tensor{Name: "x", Datatype: "INT4", Shape: []int64{1}, Data: []byte{0}}, wantErr: ErrDatatype},
		{name: "negative dim", t: &Tensor{Name: "x", Datatype: Int8, Shape: []int64{-1}}, wantErr: ErrShape},
		{name: "overflow", t: &Tensor{Name: "x", Datatype: Int8, Shape: []int64{1 << 40, 1 << 40}}, wantErr: ErrShape},
		{name: "byte overflow", t: &Tensor{Name: "x", Datatype: FP64, Shape: []int64{1 << 61}}, wantErr: ErrDataLength},
		{
			name:    "short data message",
			t:       &Tensor{Name: "INPUT0", Datatype: Int32, Shape: []int64{1, 16}, Data: make([]byte, 60)},
			wantErr: ErrDataLength,
			wantMsg: `tensor "INPUT0": data is 60 bytes, shape [1,16] of INT32 needs 64`,
		},
		{name: "long data", t: &Tensor{Name: "x", Datatype: Uint16, Shape: []int64{2}, Data: make([]byte, 5)}, wantErr: ErrDataLength},
		{name: "bytes too few elements", t: &Tensor{Name: "x", Datatype: Bytes, Shape: []int64{3}, Data: strs("a", "b")}, wantErr: ErrDataLength},
		{name: "bytes trailing", t: &Tensor{Name: "x", Datatype: Bytes, Shape: []int64{1}, Data: append(strs("a"), 0)}, wantErr: ErrDataLength},
		{name: "bytes truncated prefix", t: &Tensor{Name: "x", Datatype: Bytes, Shape: []int64{2}, Data: append(strs("a"), 1, 0)}, wantErr: ErrDataLength},
		{name: "bytes length past end", t: &Tensor{Name: "x", Datatype: Bytes, Shape: []int64{1}, Data: []byte{9, 0, 0, 0, 'a'}}, wantErr: ErrDataLength},
		{name: "bytes huge length", t: &Tensor{Name: "x", Datatype: Bytes, Shape: []int64{1}, Data: []byte{0xff, 0xff, 0xff, 0xff}}, wantErr: ErrDataLength},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			err := tc.t.Validate()
			if !errors.Is(err, tc.wantErr) {
				t.Fatalf("err = %v, want %v", err, tc.wantErr)
			}
			if tc.wantMsg != "" && err.Error() != tc.wantMsg {
				t.Fatalf("message = %q, want %q", err.Error(), tc.wantMsg)
			}
		})
	}
}

func TestSpecCheck(t *testing.T) {
	spec := Spec{Name: "INPUT0", Datatype: Int32, Dims: []int64{-1, 16}}
	tests := []struct {
		name    string
		spec    Spec
		t       *Tensor
		wantErr error
		wantMsg string
	}{
		{name: "ok", spec: spec, t: &Tensor{Name: "INPUT0", Datatype: Int32, Shape: []int64{2, 3, 16}, Data: make([]byte, 2*3*16*4)}},
		{name: "ok any datatype", spec: Spec{Name: "INPUT0", Dims: []int64{2}}, t: &Tensor{Name: "INPUT0", Datatype: Bytes, Shape: []int64{1, 2}, Data: strs("a", "b")}},
		{name: "ok no dims", spec: Spec{Name: "INPUT0", Datatype: FP32}, t: &Tensor{Name: "INPUT0", Datatype: FP32, Shape: []int64{4}, Data: make([]byte, 16)}},
		{
			name: "bad dim", spec: Spec{Name: "INPUT0", Datatype: Int32, Dims: []int64{16}},
			t:       &Tensor{Name: "INPUT0", Datatype: Int32, Shape: []int64{2, 15}, Data: make([]byte, 2*15*4)},
			wantErr: ErrShape, wantMsg: `input "INPUT0": expected shape [-1,16], got [2,15]`,
		},
		{
			name: "bad datatype", spec: spec,
			t:       &Tensor{Name: "INPUT0", Datatype: FP32, Shape: []int64{1, 1, 16}, Data: make([]byte, 64)},
			wantErr: ErrDatatype, wantMsg: `input "INPUT0": expected datatype INT32, got FP32`,
		},
		{name: "zero batch", spec: spec, t: &Tensor{Name: "INPUT0", Datatype: Int32, Shape: []int64{0, 1, 16}}, wantErr: ErrShape},
		{name: "missing batch dim", spec: spec, t: &Tensor{Name: "INPUT0", Datatype: Int32, Shape: []int64{1, 16}, Data: make([]byte, 64)}, wantErr: ErrShape},
		{name: "negative dim", spec: spec, t: &Tensor{Name: "INPUT0", Datatype: Int32, Shape: []int64{1, -1, 16}}, wantErr: ErrShape},
		{name: "bad data length", spec: spec, t: &Tensor{Name: "INPUT0", Datatype: Int32, Shape: []int64{1, 1, 16}, Data: make([]byte, 60)}, wantErr: ErrDataLength},
		{name: "wrong name", spec: spec, t: &Tensor{Name: "INPUT1", Datatype: Int32, Shape: []int64{1, 1, 16}, Data: make([]byte, 64)}, wantErr: ErrIncompatible},
		{name: "nil", spec: spec, t: nil, wantErr: ErrShape},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			err := tc.spec.Check(tc.t)
			if !errors.Is(err, tc.wantErr) {
				t.Fatalf("err = %v, want %v", err, tc.wantErr)
			}
			if tc.wantMsg != "" && err.Error() != tc.wantMsg {
				t.Fatalf("message = %q, want %q", err.Error(), tc.wantMsg)
			}
		})
	}
}

func TestErrorsWrapSentinels(t *testing.T) {
	// Errors from nested calls keep their sentinel through extra context.
	_, err := Concat("b", []*Tensor{{Name: "p", Datatype: Int32, Shape: []int64{1}, Data: []byte{1}}}, false)
	if !errors.Is(err, ErrDataLength) {
		t.Fatalf("err = %v, want ErrDataLength", err)
	}
	if !bytes.Contains([]byte(err.Error()), []byte(`part 0`)) {
		t.Fatalf("err = %v, want part index", err)
	}
}
