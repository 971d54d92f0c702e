package tensor

import (
	"bytes"
	"encoding/json"
	"errors"
	"math"
	"math/rand/v2"
	"strconv"
	"testing"
)

func TestFromJSON(t *testing.T) {
	tests := []struct {
		name    string
		dt      string
		shape   []int64
		data    string
		want    []byte
		wantErr error
	}{
		// Every datatype, flat.
		{name: "bool", dt: "BOOL", shape: []int64{3}, data: `[true,false,true]`, want: []byte{1, 0, 1}},
		{name: "uint8", dt: "UINT8", shape: []int64{3}, data: `[0,255,7]`, want: []byte{0, 255, 7}},
		{name: "uint16", dt: "UINT16", shape: []int64{2}, data: `[65535,1]`, want: u16s(65535, 1)},
		{name: "uint32", dt: "UINT32", shape: []int64{2}, data: `[4294967295,0]`, want: u32s(4294967295, 0)},
		{name: "uint64 max", dt: "UINT64", shape: []int64{2}, data: `[18446744073709551615,9007199254740993]`, want: u64s(math.MaxUint64, 9007199254740993)},
		{name: "int8", dt: "INT8", shape: []int64{2}, data: `[-128,127]`, want: []byte{0x80, 0x7f}},
		{name: "int16", dt: "INT16", shape: []int64{2}, data: `[-32768,32767]`, want: u16s(0x8000, 0x7fff)},
		{name: "int32", dt: "INT32", shape: []int64{3}, data: `[-2147483648,2147483647,-1]`, want: i32s(math.MinInt32, math.MaxInt32, -1)},
		{name: "int64 extremes", dt: "INT64", shape: []int64{3}, data: `[-9223372036854775808,9223372036854775807,9007199254740993]`,
			want: u64s(1<<63, math.MaxInt64, 9007199254740993)},
		{name: "fp16", dt: "FP16", shape: []int64{4}, data: `[1,1.0,-2,65504]`, want: u16s(0x3C00, 0x3C00, 0xC000, 0x7BFF)},
		{name: "bf16", dt: "BF16", shape: []int64{3}, data: `[1,-2,0.5]`, want: u16s(0x3F80, 0xC000, 0x3F00)},
		{name: "fp32", dt: "FP32", shape: []int64{3}, data: `[1.5,-0.25,1e10]`, want: f32s(1.5, -0.25, 1e10)},
		{name: "fp32 rounds once", dt: "FP32", shape: []int64{1}, data: `[0.1]`, want: f32s(0.1)},
		{name: "fp64", dt: "FP64", shape: []int64{3}, data: `[0.1,-1e-300,12345678901234567890]`, want: f64s(0.1, -1e-300, 12345678901234567890)},
		{name: "fp64 negative zero", dt: "FP64", shape: []int64{1}, data: `[-0]`, want: f64s(math.Copysign(0, -1))},
		{name: "bytes", dt: "BYTES", shape: []int64{3}, data: `["abc","","x\"y"]`, want: strs("abc", "", `x"y`)},
		{name: "bytes escapes", dt: "BYTES", shape: []int64{1}, data: `["\n\t\r\b\f\/\\\u00e9\ud83d\ude00"]`, want: strs("\n\t\r\b\f/\\é😀")},
		{name: "bytes raw utf8", dt: "BYTES", shape: []int64{1}, data: `["héllo 世界"]`, want: strs("héllo 世界")},
		{name: "bytes invalid utf8 replaced", dt: "BYTES", shape: []int64{1}, data: "[\"a\xffb\"]", want: strs("a\uFFFDb")},
		{name: "bytes lone surrogate", dt: "BYTES", shape: []int64{1}, data: `["\ud800x"]`, want: strs("\uFFFDx")},
		{name: "bytes surrogate then escape", dt: "BYTES", shape: []int64{1}, data: `["\ud800\u0041"]`, want: strs("\uFFFDA")},

		// Layout.
		{name: "nested", dt: "INT32", shape: []int64{2, 3}, data: `[[1,2,3],[4,5,6]]`, want: i32s(1, 2, 3, 4, 5, 6)},
		{name: "nested 3d", dt: "INT8", shape: []int64{2, 1, 2}, data: `[[[1,2]],[[3,4]]]`, want: []byte{1, 2, 3, 4}},
		{name: "flat for 2d", dt: "INT32", shape: []int64{2, 3}, data: `[1,2,3,4,5,6]`, want: i32s(1, 2, 3, 4, 5, 6)},
		{name: "whitespace", dt: "INT32", shape: []int64{2, 2}, data: " \n[ [ 1 , 2 ] ,\t[3,4] ] \r\n", want: i32s(1, 2, 3, 4)},
		{name: "scalar bare", dt: "FP32", shape: []int64{}, data: `2.5`, want: f32s(2.5)},
		{name: "scalar in array", dt: "FP32", shape: []int64{}, data: `[2.5]`, want: f32s(2.5)},
		{name: "empty", dt: "FP32", shape: []int64{0, 3}, data: `[]`, want: []byte{}},
		{name: "nested empty rows", dt: "FP32", shape: []int64{2, 0}, data: `[[],[]]`, want: []byte{}},
		{name: "nested bytes", dt: "BYTES", shape: []int64{2, 1}, data: `[["a"],["bc"]]`, want: strs("a", "bc")},

		// Integral forms of integers.
		{name: "int exponent", dt: "INT32", shape: []int64{4}, data: `[1e2,1.0,1.50e1,100e-2]`, want: i32s(100, 1, 15, 1)},
		{name: "uint negative zero", dt: "UINT32", shape: []int64{2}, data: `[-0,0e999999]`, want: u32s(0, 0)},
		{name: "int64 exponent exact", dt: "INT64", shape: []int64{1}, data: `[9.223372036854775807e18]`, want: u64s(math.MaxInt64)},

		// Range and value errors.
		{name: "int32 fraction", dt: "INT32", shape: []int64{1}, data: `[1.5]`, wantErr: ErrValue},
		{name: "int32 small fraction", dt: "INT32", shape: []int64{1}, data: `[1e-1]`, wantErr: ErrValue},
		{name: "uint8 300", dt: "UINT8", shape: []int64{1}, data: `[300]`, wantErr: ErrValue},
		{name: "uint32 -1", dt: "UINT32", shape: []int64{1}, data: `[-1]`, wantErr: ErrValue},
		{name: "int8 -129", dt: "INT8", shape: []int64{1}, data: `[-129]`, wantErr: ErrValue},
		{name: "int16 32768", dt: "INT16", shape: []int64{1}, data: `[32768]`, wantErr: ErrValue},
		{name: "int32 overflow", dt: "INT32", shape: []int64{1}, data: `[2147483648]`, wantErr: ErrValue},
		{name: "int64 overflow", dt: "INT64", shape: []int64{1}, data: `[9223372036854775808]`, wantErr: ErrValue},
		{name: "int64 underflow", dt: "INT64", shape: []int64{1}, data: `[-9223372036854775809]`, wantErr: ErrValue},
		{name: "uint64 overflow", dt: "UINT64", shape: []int64{1}, data: `[18446744073709551616]`, wantErr: ErrValue},
		{name: "uint64 huge exponent", dt: "UINT64", shape: []int64{1}, data: `[1e999999999999]`, wantErr: ErrValue},
		{name: "int64 via exponent overflow", dt: "INT64", shape: []int64{1}, data: `[1e19]`, wantErr: ErrValue},
		{name: "fp32 overflow", dt: "FP32", shape: []int64{1}, data: `[1e39]`, wantErr: ErrValue},
		{name: "fp64 overflow", dt: "FP64", shape: []int64{1}, data: `[1e309]`, wantErr: ErrValue},
		{name: "fp16 overflow", dt: "FP16", shape: []int64{1}, data: `[65520]`, wantErr: ErrValue},
		{name: "bf16 overflow", dt: "BF16", shape: []int64{1}, data: `[1e39]`, wantErr: ErrValue},
		{name: "bool number", dt: "BOOL", shape: []int64{1}, data: `[1]`, wantErr: ErrValue},
		{name: "int string", dt: "INT32", shape: []int64{1}, data: `["1"]`, wantErr: ErrValue},
		{name: "int bool", dt: "INT32", shape: []int64{1}, data: `[true]`, wantErr: ErrValue},
		{name: "int null", dt: "INT32", shape: []int64{1}, data: `[null]`, wantErr: ErrValue},
		{name: "bytes number", dt: "BYTES", shape: []int64{1}, data: `[1]`, wantErr: ErrValue},

		// Shape and count errors.
		{name: "too few", dt: "INT32", shape: []int64{1, 16}, data: `[1,2,3]`, wantErr: ErrDataLength},
		{name: "too many", dt: "INT32", shape: []int64{2}, data: `[1,2,3]`, wantErr: ErrDataLength},
		{name: "nested wrong inner", dt: "INT32", shape: []int64{2, 3}, data: `[[1,2],[3,4,5]]`, wantErr: ErrShape},
		{name: "nested wrong outer", dt: "INT32", shape: []int64{2, 2}, data: `[[1,2],[3,4],[5,6]]`, wantErr: ErrShape},
		{name: "nested too deep", dt: "INT32", shape: []int64{1, 2}, data: `[[[1,2]]]`, wantErr: ErrShape},
		{name: "nested for 1d", dt: "INT32", shape: []int64{2}, data: `[[1,2]]`, wantErr: ErrShape},
		{name: "nested too shallow", dt: "INT32", shape: []int64{1, 2, 2}, data: `[[1,2,3,4]]`, wantErr: ErrShape},
		{name: "mixed", dt: "INT32", shape: []int64{2, 2}, data: `[1,[2,3],4]`, wantErr: ErrShape},
		{name: "mixed nested", dt: "INT32", shape: []int64{2, 2}, data: `[[1,2],3]`, wantErr: ErrShape},
		{name: "scalar for 1d", dt: "INT32", shape: []int64{1}, data: `5`, wantErr: ErrShape},
		{name: "negative shape", dt: "INT32", shape: []int64{-1}, data: `[]`, wantErr: ErrShape},
		{name: "huge shape", dt: "INT32", shape: []int64{1 << 40, 1 << 40}, data: `[1]`, wantErr: ErrShape},
		{name: "implausible shape", dt: "INT32", shape: []int64{1 << 40}, data: `[1]`, wantErr: ErrDataLength},
		{name: "unknown datatype", dt: "INT4", shape: []int64{1}, data: `[1]`, wantErr: ErrDatatype},

		// Malformed JSON.
		{name: "missing data", dt: "INT32", shape: []int64{1}, data: ``, wantErr: ErrValue},
		{name: "unterminated", dt: "INT32", shape: []int64{2}, data: `[1,2`, wantErr: ErrValue},
		{name: "trailing comma", dt: "INT32", shape: []int64{2}, data: `[1,2,]`, wantErr: ErrValue},
		{name: "leading comma", dt: "INT32", shape: []int64{1}, data: `[,1]`, wantErr: ErrValue},
		{name: "leading zero", dt: "INT32", shape: []int64{1}, data: `[01]`, wantErr: ErrValue},
		{name: "plus sign", dt: "INT32", shape: []int64{1}, data: `[+1]`, wantErr: ErrValue},
		{name: "bare dot", dt: "FP32", shape: []int64{1}, data: `[1.]`, wantErr: ErrValue},
		{name: "empty exponent", dt: "FP32", shape: []int64{1}, data: `[1e]`, wantErr: ErrValue},
		{name: "nan", dt: "FP32", shape: []int64{1}, data: `[NaN]`, wantErr: ErrValue},
		{name: "infinity", dt: "FP64", shape: []int64{1}, data: `[Infinity]`, wantErr: ErrValue},
		{name: "hex float", dt: "FP64", shape: []int64{1}, data: `[0x1p3]`, wantErr: ErrValue},
		{name: "trailing garbage", dt: "INT32", shape: []int64{1}, data: `[1] x`, wantErr: ErrValue},
		{name: "two arrays", dt: "INT32", shape: []int64{1}, data: `[1][2]`, wantErr: ErrValue},
		{name: "object", dt: "INT32", shape: []int64{1}, data: `{"a":1}`, wantErr: ErrShape},
		{name: "unterminated string", dt: "BYTES", shape: []int64{1}, data: `["abc`, wantErr: ErrValue},
		{name: "bad escape", dt: "BYTES", shape: []int64{1}, data: `["\x"]`, wantErr: ErrValue},
		{name: "short unicode escape", dt: "BYTES", shape: []int64{1}, data: `["\u12"]`, wantErr: ErrValue},
		{name: "control char", dt: "BYTES", shape: []int64{1}, data: "[\"a\nb\"]", wantErr: ErrValue},
		{name: "truncated true", dt: "BOOL", shape: []int64{1}, data: `[tru]`, wantErr: ErrValue},
		{name: "single quotes", dt: "BYTES", shape: []int64{1}, data: `['a']`, wantErr: ErrValue},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			got, err := FromJSON(&JSON{Name: "IN", Datatype: tc.dt, Shape: tc.shape, Data: json.RawMessage(tc.data)})
			if !errors.Is(err, tc.wantErr) {
				t.Fatalf("err = %v, want %v", err, tc.wantErr)
			}
			if err != nil {
				return
			}
			if !bytes.Equal(got.Data, tc.want) {
				t.Fatalf("data = %x, want %x", got.Data, tc.want)
			}
			if err := got.Validate(); err != nil {
				t.Fatalf("decoded tensor invalid: %v", err)
			}
			if got.Name != "IN" || string(got.Datatype) != tc.dt || formatShape(got.Shape) != formatShape(tc.shape) {
				t.Fatalf("got %q %s %v", got.Name, got.Datatype, got.Shape)
			}
		})
	}
}

func TestFromJSONNil(t *testing.T) {
	if _, err := FromJSON(nil); !errors.Is(err, ErrValue) {
		t.Fatalf("err = %v, want ErrValue", err)
	}
}

func TestFromJSONErrorMessage(t *testing.T) {
	_, err := FromJSON(&JSON{Name: "INPUT0", Datatype: "UINT8", Shape: []int64{2}, Data: json.RawMessage(`[1,300]`)})
	want := `tensor "INPUT0": element 1: 300 out of range for UINT8`
	if err == nil || err.Error() != want {
		t.Fatalf("err = %v, want %q", err, want)
	}
}

// TestJSONRoundTrip decodes canonical JSON for every datatype, re-encodes
// it and expects the same text; nested input comes back flat.
func TestJSONRoundTrip(t *testing.T) {
	tests := []struct {
		name  string
		dt    DataType
		shape []int64
		in    string
		want  string // "" means same as in
	}{
		{name: "bool", dt: Bool, shape: []int64{2, 2}, in: `[true,false,false,true]`},
		{name: "uint8", dt: Uint8, shape: []int64{3}, in: `[0,1,255]`},
		{name: "uint16", dt: Uint16, shape: []int64{2}, in: `[0,65535]`},
		{name: "uint32", dt: Uint32, shape: []int64{2}, in: `[0,4294967295]`},
		{name: "uint64", dt: Uint64, shape: []int64{2}, in: `[0,18446744073709551615]`},
		{name: "int8", dt: Int8, shape: []int64{3}, in: `[-128,0,127]`},
		{name: "int16", dt: Int16, shape: []int64{3}, in: `[-32768,0,32767]`},
		{name: "int32", dt: Int32, shape: []int64{3}, in: `[-2147483648,0,2147483647]`},
		{name: "int64", dt: Int64, shape: []int64{3}, in: `[-9223372036854775808,9007199254740993,9223372036854775807]`},
		{name: "fp16", dt: FP16, shape: []int64{5}, in: `[1,-2,0.5,65504,5.9604645e-8]`},
		{name: "fp16 inexact", dt: FP16, shape: []int64{1}, in: `[0.1]`, want: `[0.099975586]`},
		{name: "bf16", dt: BF16, shape: []int64{3}, in: `[1,-2,3.3895314e+38]`, want: `[1,-2,3.3895314e+38]`},
		{name: "fp32", dt: FP32, shape: []int64{5}, in: `[0.1,-1.5,1e+21,1e-7,0]`},
		{name: "fp32 negative zero", dt: FP32, shape: []int64{1}, in: `[-0]`},
		{name: "fp64", dt: FP64, shape: []int64{4}, in: `[0.1,1e-300,123456789.125,-1.7976931348623157e+308]`},
		{name: "bytes", dt: Bytes, shape: []int64{4}, in: `["a","","quote\"back\\slash","tab\tnl\nctl\u0001"]`},
		{name: "bytes unicode", dt: Bytes, shape: []int64{2}, in: `["héllo","😀"]`},
		{name: "bytes escaped unicode", dt: Bytes, shape: []int64{1}, in: `["\u00e9"]`, want: `["é"]`},
		{name: "nested to flat", dt: Int32, shape: []int64{2, 2}, in: `[[1,2],[3,4]]`, want: `[1,2,3,4]`},
		{name: "exponent int to plain", dt: Int64, shape: []int64{1}, in: `[1e18]`, want: `[1000000000000000000]`},
		{name: "empty", dt: FP32, shape: []int64{0}, in: `[]`},
		{name: "scalar", dt: Int32, shape: []int64{}, in: `[7]`},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			raw, err := FromJSON(&JSON{Name: "x", Datatype: string(tc.dt), Shape: tc.shape, Data: json.RawMessage(tc.in)})
			if err != nil {
				t.Fatalf("FromJSON: %v", err)
			}
			j, err := ToJSON(raw)
			if err != nil {
				t.Fatalf("ToJSON: %v", err)
			}
			want := tc.want
			if want == "" {
				want = tc.in
			}
			if string(j.Data) != want {
				t.Fatalf("data = %s, want %s", j.Data, want)
			}
			if j.Name != "x" || j.Datatype != string(tc.dt) || formatShape(j.Shape) != formatShape(tc.shape) {
				t.Fatalf("header = %q %q %v", j.Name, j.Datatype, j.Shape)
			}
			back, err := FromJSON(j)
			if err != nil {
				t.Fatalf("FromJSON again: %v", err)
			}
			if !bytes.Equal(back.Data, raw.Data) {
				t.Fatalf("second decode = %x, want %x", back.Data, raw.Data)
			}
			// The whole struct marshals to valid JSON.
			if _, err := json.Marshal(j); err != nil {
				t.Fatalf("json.Marshal: %v", err)
			}
		})
	}
}

func TestToJSONBytes(t *testing.T) {
	tests := []struct {
		name string
		in   []string
		want []string // as decoded by encoding/json
	}{
		{name: "quotes", in: []string{`say "hi"`, `\`}, want: []string{`say "hi"`, `\`}},
		{name: "invalid utf8", in: []string{"a\xffb", "\xc3", "\xed\xa0\x80"}, want: []string{"a\uFFFDb", "\uFFFD", "\uFFFD\uFFFD\uFFFD"}},
		{name: "controls", in: []string{"\x00\x1f\x7f", "\u2028"}, want: []string{"\x00\x1f\x7f", "\u2028"}},
		{name: "html", in: []string{"<a&b>"}, want: []string{"<a&b>"}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			raw := &Tensor{Name: "s", Datatype: Bytes, Shape: []int64{int64(len(tc.in))}, Data: strs(tc.in...)}
			j, err := ToJSON(raw)
			if err != nil {
				t.Fatal(err)
			}
			if !json.Valid(j.Data) {
				t.Fatalf("invalid JSON: %q", j.Data)
			}
			var got []string
			if err := json.Unmarshal(j.Data, &got); err != nil {
				t.Fatal(err)
			}
			if len(got) != len(tc.want) {
				t.Fatalf("got %q, want %q", got, tc.want)
			}
			for i := range got {
				if got[i] != tc.want[i] {
					t.Fatalf("element %d = %q, want %q", i, got[i], tc.want[i])
				}
			}
		})
	}
}

func TestToJSONErrors(t *testing.T) {
	tests := []struct {
		name    string
		t       *Tensor
		wantErr error
	}{
		{name: "nan fp32", t: &Tensor{Name: "x", Datatype: FP32, Shape: []int64{2}, Data: f32s(1, float32(math.NaN()))}, wantErr: ErrValue},
		{name: "inf fp64", t: &Tensor{Name: "x", Datatype: FP64, Shape: []int64{1}, Data: f64s(math.Inf(-1))}, wantErr: ErrValue},
		{name: "inf fp16", t: &Tensor{Name: "x", Datatype: FP16, Shape: []int64{1}, Data: u16s(0x7C00)}, wantErr: ErrValue},
		{name: "nan bf16", t: &Tensor{Name: "x", Datatype: BF16, Shape: []int64{1}, Data: u16s(0x7FC0)}, wantErr: ErrValue},
		{name: "bad length", t: &Tensor{Name: "x", Datatype: Int32, Shape: []int64{2}, Data: i32s(1)}, wantErr: ErrDataLength},
		{name: "nil", t: nil, wantErr: ErrShape},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			dst := []byte("prefix")
			out, err := AppendJSONData(dst, tc.t)
			if !errors.Is(err, tc.wantErr) {
				t.Fatalf("err = %v, want %v", err, tc.wantErr)
			}
			if string(out) != "prefix" {
				t.Fatalf("dst changed on error: %q", out)
			}
		})
	}
}

func TestAppendJSONData(t *testing.T) {
	dst := []byte(`{"data":`)
	out, err := AppendJSONData(dst, &Tensor{Name: "x", Datatype: Bool, Shape: []int64{3}, Data: []byte{0, 1, 2}})
	if err != nil {
		t.Fatal(err)
	}
	if got, want := string(out), `{"data":[false,true,true]`; got != want {
		t.Fatalf("got %s, want %s", got, want)
	}
}

func TestFloatFormatting(t *testing.T) {
	tests := []struct {
		name string
		t    *Tensor
		want string
	}{
		{name: "fp32 large", t: &Tensor{Datatype: FP32, Shape: []int64{3}, Data: f32s(1e20, 1e21, 123456)}, want: `[100000000000000000000,1e+21,123456]`},
		{name: "fp32 small", t: &Tensor{Datatype: FP32, Shape: []int64{2}, Data: f32s(1e-6, 1.5e-7)}, want: `[0.000001,1.5e-7]`},
		{name: "fp64 small", t: &Tensor{Datatype: FP64, Shape: []int64{2}, Data: f64s(5e-324, 1e-7)}, want: `[5e-324,1e-7]`},
		{name: "fp16 subnormal", t: &Tensor{Datatype: FP16, Shape: []int64{2}, Data: u16s(0x0001, 0x8000)}, want: `[5.9604645e-8,-0]`},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			got, err := AppendJSONData(nil, tc.t)
			if err != nil {
				t.Fatal(err)
			}
			if string(got) != tc.want {
				t.Fatalf("got %s, want %s", got, tc.want)
			}
		})
	}
}

// TestFastFloatMatchesStrconv compares the fast decimal path with strconv
// on many random decimals, for both FP32 and FP64 results.
func TestFastFloatMatchesStrconv(t *testing.T) {
	rng := rand.New(rand.NewPCG(1, 2))
	var buf []byte
	for i := 0; i < 200000; i++ {
		buf = buf[:0]
		if rng.IntN(2) == 0 {
			buf = append(buf, '-')
		}
		intDigits := rng.IntN(10)
		if intDigits == 0 {
			buf = append(buf, '0')
		} else {
			buf = append(buf, byte('1'+rng.IntN(9)))
			for range intDigits - 1 {
				buf = append(buf, byte('0'+rng.IntN(10)))
			}
		}
		if rng.IntN(2) == 0 {
			buf = append(buf, '.')
			for range 1 + rng.IntN(12) {
				buf = append(buf, byte('0'+rng.IntN(10)))
			}
		}
		if rng.IntN(3) == 0 {
			buf = append(buf, 'e')
			buf = strconv.AppendInt(buf, int64(rng.IntN(60)-30), 10)
		}
		for _, dt := range []DataType{FP32, FP64} {
			d := decoder{dt: dt, n: 1}
			if err := d.float(buf); err != nil {
				continue // out of range; checked by strconv below
			}
			bits := 64
			if dt == FP32 {
				bits = 32
			}
			want, err := strconv.ParseFloat(string(buf), bits)
			if err != nil {
				t.Fatalf("%s: decoder accepted, strconv: %v", buf, err)
			}
			var wantRaw []byte
			if dt == FP32 {
				wantRaw = f32s(float32(want))
			} else {
				wantRaw = f64s(want)
			}
			if !bytes.Equal(d.out, wantRaw) {
				t.Fatalf("%s as %s: got %x, want %x", buf, dt, d.out, wantRaw)
			}
		}
	}
}

func TestFP32MidpointFallback(t *testing.T) {
	// 1 + 2^-24 is exactly halfway between two float32 values; the decimal
	// just above it must round up, and the midpoint itself to even.
	tests := []struct {
		name string
		in   string
		want float32
	}{
		{name: "midpoint ties to even", in: "1.000000059604644775390625", want: 1},
		{name: "just above midpoint", in: "1.0000000596046447753906251", want: math.Nextafter32(1, 2)},
		{name: "short midpoint-ish", in: "16777217", want: 16777216},
		{name: "short above", in: "16777219", want: 16777220},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			got, err := FromJSON(&JSON{Datatype: "FP32", Shape: []int64{1}, Data: json.RawMessage("[" + tc.in + "]")})
			if err != nil {
				t.Fatal(err)
			}
			if !bytes.Equal(got.Data, f32s(tc.want)) {
				t.Fatalf("got %x, want %x", got.Data, f32s(tc.want))
			}
		})
	}
}
