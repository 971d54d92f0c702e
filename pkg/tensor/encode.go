package tensor

import (
	"encoding/binary"
	"math"
	"strconv"

	"github.com/inferq/inferq/internal/jsonstr"
)

// ToJSON renders t in OIP JSON form with a flat data array. Floats use the
// shortest representation that reads back to the same value (FP16/BF16 are
// widened to float32 first); NaN and infinities have no JSON form and wrap
// ErrValue. BOOL renders any non-zero byte as true. BYTES elements become
// JSON strings; since JSON strings are Unicode, invalid UTF-8 is replaced by
// U+FFFD (binary payloads should use the binary extension instead).
func ToJSON(t *Tensor) (*JSON, error) {
	data, err := AppendJSONData(nil, t)
	if err != nil {
		return nil, err
	}
	shape := make([]int64, len(t.Shape))
	copy(shape, t.Shape)
	return &JSON{Name: t.Name, Shape: shape, Datatype: string(t.Datatype), Data: data}, nil
}

// AppendJSONData appends t's elements as a flat JSON array to dst, so
// response writers can reuse buffers. t is validated first; on error dst is
// returned unchanged.
func AppendJSONData(dst []byte, t *Tensor) ([]byte, error) {
	if err := t.Validate(); err != nil {
		return dst, err
	}
	orig := len(dst)
	data := t.Data
	n := len(data)
	// Rough size estimate to avoid repeated growth.
	switch t.Datatype {
	case Bytes:
		dst = grow(dst, n+2)
	case Bool:
		dst = grow(dst, n*6+2)
	default:
		dst = grow(dst, n/t.Datatype.ElemSize()*estWidth(t.Datatype)+2)
	}
	dst = append(dst, '[')
	var err error
	switch t.Datatype {
	case Bool:
		for i, c := range data {
			if i > 0 {
				dst = append(dst, ',')
			}
			if c != 0 {
				dst = append(dst, "true"...)
			} else {
				dst = append(dst, "false"...)
			}
		}
	case Uint8:
		for i, c := range data {
			dst = comma(dst, i)
			dst = strconv.AppendUint(dst, uint64(c), 10)
		}
	case Int8:
		for i, c := range data {
			dst = comma(dst, i)
			dst = strconv.AppendInt(dst, int64(int8(c)), 10)
		}
	case Uint16:
		for i := 0; i < n; i += 2 {
			dst = comma(dst, i)
			dst = strconv.AppendUint(dst, uint64(binary.LittleEndian.Uint16(data[i:])), 10)
		}
	case Int16:
		for i := 0; i < n; i += 2 {
			dst = comma(dst, i)
			dst = strconv.AppendInt(dst, int64(int16(binary.LittleEndian.Uint16(data[i:]))), 10)
		}
	case Uint32:
		for i := 0; i < n; i += 4 {
			dst = comma(dst, i)
			dst = strconv.AppendUint(dst, uint64(binary.LittleEndian.Uint32(data[i:])), 10)
		}
	case Int32:
		for i := 0; i < n; i += 4 {
			dst = comma(dst, i)
			dst = strconv.AppendInt(dst, int64(int32(binary.LittleEndian.Uint32(data[i:]))), 10)
		}
	case Uint64:
		for i := 0; i < n; i += 8 {
			dst = comma(dst, i)
			dst = strconv.AppendUint(dst, binary.LittleEndian.Uint64(data[i:]), 10)
		}
	case Int64:
		for i := 0; i < n; i += 8 {
			dst = comma(dst, i)
			dst = strconv.AppendInt(dst, int64(binary.LittleEndian.Uint64(data[i:])), 10)
		}
	case FP16, BF16:
		conv := fp16ToFloat32
		if t.Datatype == BF16 {
			conv = bf16ToFloat32
		}
		for i := 0; i < n; i += 2 {
			dst = comma(dst, i)
			if dst, err = appendFloat(dst, float64(conv(binary.LittleEndian.Uint16(data[i:]))), 32); err != nil {
				break
			}
		}
	case FP32:
		for i := 0; i < n; i += 4 {
			dst = comma(dst, i)
			if dst, err = appendFloat(dst, float64(math.Float32frombits(binary.LittleEndian.Uint32(data[i:]))), 32); err != nil {
				break
			}
		}
	case FP64:
		for i := 0; i < n; i += 8 {
			dst = comma(dst, i)
			if dst, err = appendFloat(dst, math.Float64frombits(binary.LittleEndian.Uint64(data[i:])), 64); err != nil {
				break
			}
		}
	case Bytes:
		for off, i := 0, 0; off < n; i++ {
			end := nextBytesElem(data, off)
			dst = comma(dst, i)
			dst = jsonstr.AppendBytes(dst, data[off+4:end])
			off = end
		}
	}
	if err != nil {
		return dst[:orig], errf(ErrValue, "tensor %q: %s has no JSON representation", t.Name, err.Error())
	}
	return append(dst, ']'), nil
}

func grow(b []byte, n int) []byte {
	if cap(b)-len(b) >= n {
		return b
	}
	nb := make([]byte, len(b), len(b)+n)
	copy(nb, b)
	return nb
}

func estWidth(d DataType) int {
	switch d {
	case Uint8, Int8:
		return 4
	case Uint16, Int16, FP16, BF16:
		return 7
	case Uint32, Int32:
		return 8
	case FP32:
		return 12
	}
	return 20
}

// comma separates elements; i is the element's index (or byte offset).
func comma(dst []byte, i int) []byte {
	if i > 0 {
		return append(dst, ',')
	}
	return dst
}

type nonFinite float64

func (f nonFinite) Error() string { return strconv.FormatFloat(float64(f), 'g', -1, 64) }

// appendFloat formats like encoding/json: shortest round-trip digits,
// plain notation for ordinary magnitudes and exponent notation otherwise.
func appendFloat(dst []byte, f float64, bits int) ([]byte, error) {
	if math.IsInf(f, 0) || math.IsNaN(f) {
		return dst, nonFinite(f)
	}
	abs := math.Abs(f)
	format := byte('f')
	if abs != 0 {
		if bits == 64 && (abs < 1e-6 || abs >= 1e21) ||
			bits == 32 && (float32(abs) < 1e-6 || float32(abs) >= 1e21) {
			format = 'e'
		}
	}
	dst = strconv.AppendFloat(dst, f, format, -1, bits)
	if format == 'e' {
		// Shorten e-07 to e-7 as encoding/json does.
		n := len(dst)
		if n >= 4 && dst[n-4] == 'e' && dst[n-3] == '-' && dst[n-2] == '0' {
			dst[n-2] = dst[n-1]
			dst = dst[:n-1]
		}
	}
	return dst, nil
}
