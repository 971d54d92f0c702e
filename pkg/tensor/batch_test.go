package tensor

import (
	"bytes"
	"errors"
	"reflect"
	"testing"
)

func TestConcat(t *testing.T) {
	tests := []struct {
		name      string
		parts     []*Tensor
		ragged    bool
		wantShape []int64
		wantData  []byte
		wantMask  []byte // nil: no mask expected
		wantRows  []Range
		wantErr   error
	}{
		{
			name: "same shape int32",
			parts: []*Tensor{
				{Name: "a", Datatype: Int32, Shape: []int64{1, 2}, Data: i32s(1, 2)},
				{Name: "b", Datatype: Int32, Shape: []int64{2, 2}, Data: i32s(3, 4, 5, 6)},
			},
			wantShape: []int64{3, 2},
			wantData:  i32s(1, 2, 3, 4, 5, 6),
			wantRows:  []Range{{0, 1}, {1, 3}},
		},
		{
			name: "same shape ragged allowed has no mask",
			parts: []*Tensor{
				{Name: "a", Datatype: FP32, Shape: []int64{1, 1}, Data: f32s(1)},
				{Name: "b", Datatype: FP32, Shape: []int64{1, 1}, Data: f32s(2)},
			},
			ragged:    true,
			wantShape: []int64{2, 1},
			wantData:  f32s(1, 2),
			wantRows:  []Range{{0, 1}, {1, 2}},
		},
		{
			name: "rank 1",
			parts: []*Tensor{
				{Name: "a", Datatype: Int8, Shape: []int64{2}, Data: []byte{1, 2}},
				{Name: "b", Datatype: Int8, Shape: []int64{0}},
				{Name: "c", Datatype: Int8, Shape: []int64{1}, Data: []byte{3}},
			},
			wantShape: []int64{3},
			wantData:  []byte{1, 2, 3},
			wantRows:  []Range{{0, 2}, {2, 2}, {2, 3}},
		},
		{
			name: "ragged int32",
			parts: []*Tensor{
				{Name: "a", Datatype: Int32, Shape: []int64{1, 2}, Data: i32s(1, 2)},
				{Name: "b", Datatype: Int32, Shape: []int64{2, 3}, Data: i32s(3, 4, 5, 6, 7, 8)},
			},
			ragged:    true,
			wantShape: []int64{3, 3},
			wantData:  i32s(1, 2, 0, 3, 4, 5, 6, 7, 8),
			wantMask:  []byte{1, 1, 0, 1, 1, 1, 1, 1, 1},
			wantRows:  []Range{{0, 1}, {1, 3}},
		},
		{
			name: "ragged 3d",
			parts: []*Tensor{
				{Name: "a", Datatype: Uint8, Shape: []int64{1, 1, 2}, Data: []byte{1, 2}},
				{Name: "b", Datatype: Uint8, Shape: []int64{1, 2, 1}, Data: []byte{3, 4}},
			},
			ragged:    true,
			wantShape: []int64{2, 2, 2},
			wantData:  []byte{1, 2, 0, 0, 3, 0, 4, 0},
			wantMask:  []byte{1, 1, 0, 0, 1, 0, 1, 0},
			wantRows:  []Range{{0, 1}, {1, 2}},
		},
		{
			name: "ragged with empty inner",
			parts: []*Tensor{
				{Name: "a", Datatype: Int8, Shape: []int64{1, 0}},
				{Name: "b", Datatype: Int8, Shape: []int64{1, 2}, Data: []byte{5, 6}},
			},
			ragged:    true,
			wantShape: []int64{2, 2},
			wantData:  []byte{0, 0, 5, 6},
			wantMask:  []byte{0, 0, 1, 1},
			wantRows:  []Range{{0, 1}, {1, 2}},
		},
		{
			name: "bytes",
			parts: []*Tensor{
				{Name: "a", Datatype: Bytes, Shape: []int64{1, 2}, Data: strs("x", "yy")},
				{Name: "b", Datatype: Bytes, Shape: []int64{1, 2}, Data: strs("", "z")},
			},
			wantShape: []int64{2, 2},
			wantData:  strs("x", "yy", "", "z"),
			wantRows:  []Range{{0, 1}, {1, 2}},
		},
		{
			name: "ragged bytes",
			parts: []*Tensor{
				{Name: "a", Datatype: Bytes, Shape: []int64{2, 1}, Data: strs("x", "yy")},
				{Name: "b", Datatype: Bytes, Shape: []int64{1, 3}, Data: strs("p", "q", "r")},
			},
			ragged:    true,
			wantShape: []int64{3, 3},
			wantData:  strs("x", "", "", "yy", "", "", "p", "q", "r"),
			wantMask:  []byte{1, 0, 0, 1, 0, 0, 1, 1, 1},
			wantRows:  []Range{{0, 2}, {2, 3}},
		},
		{
			name: "not ragged",
			parts: []*Tensor{
				{Name: "a", Datatype: Int32, Shape: []int64{1, 2}, Data: i32s(1, 2)},
				{Name: "b", Datatype: Int32, Shape: []int64{1, 3}, Data: i32s(3, 4, 5)},
			},
			wantErr: ErrIncompatible,
		},
		{
			name: "datatype mismatch",
			parts: []*Tensor{
				{Name: "a", Datatype: Int32, Shape: []int64{1}, Data: i32s(1)},
				{Name: "b", Datatype: FP32, Shape: []int64{1}, Data: f32s(1)},
			},
			wantErr: ErrIncompatible,
		},
		{
			name: "rank mismatch",
			parts: []*Tensor{
				{Name: "a", Datatype: Int8, Shape: []int64{1}, Data: []byte{1}},
				{Name: "b", Datatype: Int8, Shape: []int64{1, 1}, Data: []byte{1}},
			},
			ragged:  true,
			wantErr: ErrIncompatible,
		},
		{name: "scalar", parts: []*Tensor{{Name: "a", Datatype: Int8, Shape: []int64{}, Data: []byte{1}}}, wantErr: ErrShape},
		{name: "no parts", wantErr: ErrShape},
		{name: "nil part", parts: []*Tensor{nil}, wantErr: ErrShape},
		{name: "invalid part", parts: []*Tensor{{Name: "a", Datatype: Int32, Shape: []int64{1}, Data: []byte{1}}}, wantErr: ErrDataLength},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			b, err := Concat("IN", tc.parts, tc.ragged)
			if !errors.Is(err, tc.wantErr) {
				t.Fatalf("err = %v, want %v", err, tc.wantErr)
			}
			if err != nil {
				return
			}
			if b.Tensor.Name != "IN" || b.Tensor.Datatype != tc.parts[0].Datatype {
				t.Fatalf("tensor header %q %s", b.Tensor.Name, b.Tensor.Datatype)
			}
			if !reflect.DeepEqual(b.Tensor.Shape, tc.wantShape) {
				t.Fatalf("shape = %v, want %v", b.Tensor.Shape, tc.wantShape)
			}
			if !bytes.Equal(b.Tensor.Data, tc.wantData) {
				t.Fatalf("data = %x, want %x", b.Tensor.Data, tc.wantData)
			}
			if err := b.Tensor.Validate(); err != nil {
				t.Fatal(err)
			}
			if !reflect.DeepEqual(b.Rows, tc.wantRows) {
				t.Fatalf("rows = %v, want %v", b.Rows, tc.wantRows)
			}
			for i, p := range tc.parts {
				if !reflect.DeepEqual(b.Shapes[i], p.Shape) {
					t.Fatalf("shapes[%d] = %v, want %v", i, b.Shapes[i], p.Shape)
				}
			}
			if tc.wantMask == nil {
				if b.Mask != nil {
					t.Fatalf("unexpected mask %+v", b.Mask)
				}
			} else {
				if b.Mask == nil {
					t.Fatal("missing mask")
				}
				if b.Mask.Name != "IN_mask" || b.Mask.Datatype != Bool || !reflect.DeepEqual(b.Mask.Shape, tc.wantShape) {
					t.Fatalf("mask header %q %s %v", b.Mask.Name, b.Mask.Datatype, b.Mask.Shape)
				}
				if !bytes.Equal(b.Mask.Data, tc.wantMask) {
					t.Fatalf("mask = %v, want %v", b.Mask.Data, tc.wantMask)
				}
			}
			// Round trip: Split by Rows, Unpad by Shapes gives the parts back.
			outs, err := Split(b.Tensor, b.Rows)
			if err != nil {
				t.Fatal(err)
			}
			for i, o := range outs {
				u, err := Unpad(o, b.Shapes[i])
				if err != nil {
					t.Fatal(err)
				}
				p := tc.parts[i]
				if !reflect.DeepEqual(u.Shape, p.Shape) || !bytes.Equal(u.Data, p.Data) {
					t.Fatalf("part %d round trip = %v %x, want %v %x", i, u.Shape, u.Data, p.Shape, p.Data)
				}
			}
		})
	}
}

func TestConcatDoesNotAlias(t *testing.T) {
	a := &Tensor{Name: "a", Datatype: Uint8, Shape: []int64{1}, Data: []byte{1}}
	b, err := Concat("x", []*Tensor{a}, false)
	if err != nil {
		t.Fatal(err)
	}
	b.Tensor.Data[0] = 9
	b.Shapes[0][0] = 9
	if a.Data[0] != 1 || a.Shape[0] != 1 {
		t.Fatal("Concat aliases its input")
	}
}

func TestSplit(t *testing.T) {
	i32 := &Tensor{Name: "OUT", Datatype: Int32, Shape: []int64{4, 2}, Data: i32s(1, 2, 3, 4, 5, 6, 7, 8)}
	str := &Tensor{Name: "OUT", Datatype: Bytes, Shape: []int64{3, 2}, Data: strs("a", "bb", "", "c", "dd", "e")}
	tests := []struct {
		name      string
		t         *Tensor
		rows      []Range
		wantShape [][]int64
		wantData  [][]byte
		wantErr   error
	}{
		{
			name: "int32", t: i32, rows: []Range{{0, 1}, {1, 4}},
			wantShape: [][]int64{{1, 2}, {3, 2}},
			wantData:  [][]byte{i32s(1, 2), i32s(3, 4, 5, 6, 7, 8)},
		},
		{
			name: "int32 gaps overlap and empty", t: i32, rows: []Range{{3, 4}, {2, 2}, {0, 2}, {1, 3}},
			wantShape: [][]int64{{1, 2}, {0, 2}, {2, 2}, {2, 2}},
			wantData:  [][]byte{i32s(7, 8), {}, i32s(1, 2, 3, 4), i32s(3, 4, 5, 6)},
		},
		{
			name: "bytes", t: str, rows: []Range{{0, 1}, {1, 2}, {2, 3}},
			wantShape: [][]int64{{1, 2}, {1, 2}, {1, 2}},
			wantData:  [][]byte{strs("a", "bb"), strs("", "c"), strs("dd", "e")},
		},
		{name: "no ranges", t: i32, rows: nil, wantShape: [][]int64{}, wantData: [][]byte{}},
		{name: "end past rows", t: i32, rows: []Range{{0, 5}}, wantErr: ErrShape},
		{name: "negative start", t: i32, rows: []Range{{-1, 1}}, wantErr: ErrShape},
		{name: "reversed", t: i32, rows: []Range{{2, 1}}, wantErr: ErrShape},
		{name: "scalar", t: &Tensor{Name: "s", Datatype: Int8, Data: []byte{1}}, rows: []Range{{0, 1}}, wantErr: ErrShape},
		{name: "invalid", t: &Tensor{Name: "s", Datatype: Int8, Shape: []int64{2}}, rows: []Range{{0, 1}}, wantErr: ErrDataLength},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			before := append([]byte(nil), tc.t.Data...)
			outs, err := Split(tc.t, tc.rows)
			if !errors.Is(err, tc.wantErr) {
				t.Fatalf("err = %v, want %v", err, tc.wantErr)
			}
			if err != nil {
				return
			}
			if len(outs) != len(tc.wantData) {
				t.Fatalf("got %d outputs, want %d", len(outs), len(tc.wantData))
			}
			for i, o := range outs {
				if o.Name != tc.t.Name || o.Datatype != tc.t.Datatype {
					t.Fatalf("output %d header %q %s", i, o.Name, o.Datatype)
				}
				if !reflect.DeepEqual(o.Shape, tc.wantShape[i]) || !bytes.Equal(o.Data, tc.wantData[i]) {
					t.Fatalf("output %d = %v %x, want %v %x", i, o.Shape, o.Data, tc.wantShape[i], tc.wantData[i])
				}
				if err := o.Validate(); err != nil {
					t.Fatal(err)
				}
			}
			// Appending to one output must not clobber the next.
			for _, o := range outs {
				o.Data = append(o.Data, 0xAA)
			}
			for i, o := range outs {
				if !bytes.Equal(o.Data[:len(o.Data)-1], tc.wantData[i]) {
					t.Fatalf("output %d clobbered by append: %x", i, o.Data)
				}
				// Writes must not reach the input.
				for j := range o.Data {
					o.Data[j] = 0xFF
				}
				o.Shape[0] = 99
			}
			if !bytes.Equal(tc.t.Data, before) || tc.t.Shape[0] == 99 {
				t.Fatal("Split output aliases input")
			}
		})
	}
}

func TestUnpad(t *testing.T) {
	m := &Tensor{Name: "m", Datatype: Int32, Shape: []int64{2, 3}, Data: i32s(1, 2, 3, 4, 5, 6)}
	cube := &Tensor{Name: "c", Datatype: Uint8, Shape: []int64{2, 2, 2}, Data: []byte{1, 2, 3, 4, 5, 6, 7, 8}}
	str := &Tensor{Name: "s", Datatype: Bytes, Shape: []int64{2, 3}, Data: strs("a", "bb", "", "c", "dd", "e")}
	tests := []struct {
		name     string
		t        *Tensor
		shape    []int64
		wantData []byte
		wantErr  error
	}{
		{name: "same", t: m, shape: []int64{2, 3}, wantData: i32s(1, 2, 3, 4, 5, 6)},
		{name: "cols", t: m, shape: []int64{2, 2}, wantData: i32s(1, 2, 4, 5)},
		{name: "rows", t: m, shape: []int64{1, 3}, wantData: i32s(1, 2, 3)},
		{name: "both", t: m, shape: []int64{1, 1}, wantData: i32s(1)},
		{name: "empty", t: m, shape: []int64{2, 0}, wantData: []byte{}},
		{name: "3d middle", t: cube, shape: []int64{2, 1, 2}, wantData: []byte{1, 2, 5, 6}},
		{name: "3d last", t: cube, shape: []int64{2, 2, 1}, wantData: []byte{1, 3, 5, 7}},
		{name: "bytes cols", t: str, shape: []int64{2, 2}, wantData: strs("a", "bb", "c", "dd")},
		{name: "bytes rows", t: str, shape: []int64{1, 3}, wantData: strs("a", "bb", "")},
		{name: "bytes zero cols", t: str, shape: []int64{2, 0}, wantData: []byte{}},
		{name: "scalar", t: &Tensor{Name: "x", Datatype: Int8, Data: []byte{7}}, shape: []int64{}, wantData: []byte{7}},
		{name: "grow", t: m, shape: []int64{2, 4}, wantErr: ErrShape},
		{name: "rank", t: m, shape: []int64{2}, wantErr: ErrShape},
		{name: "negative", t: m, shape: []int64{-1, 3}, wantErr: ErrShape},
		{name: "invalid", t: &Tensor{Name: "x", Datatype: Int8, Shape: []int64{2}}, shape: []int64{1}, wantErr: ErrDataLength},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			u, err := Unpad(tc.t, tc.shape)
			if !errors.Is(err, tc.wantErr) {
				t.Fatalf("err = %v, want %v", err, tc.wantErr)
			}
			if err != nil {
				return
			}
			if !reflect.DeepEqual(u.Shape, tc.shape) || !bytes.Equal(u.Data, tc.wantData) {
				t.Fatalf("got %v %x, want %v %x", u.Shape, u.Data, tc.shape, tc.wantData)
			}
			if err := u.Validate(); err != nil {
				t.Fatal(err)
			}
			if len(u.Data) > 0 && len(tc.t.Data) > 0 && &u.Data[0] == &tc.t.Data[0] {
				t.Fatal("Unpad aliases input")
			}
		})
	}
}
