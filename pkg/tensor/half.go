package tensor

import "math"

// Half-precision conversions. FP16 is IEEE 754 binary16 (5 exponent bits,
// 10 mantissa bits); BF16 is the top half of a float32 (8 exponent bits,
// 7 mantissa bits). Conversions from float64 round to nearest, ties to even,
// directly from the float64 value (no intermediate float32 rounding, which
// could double-round).

// halfFormat describes a 16-bit binary floating-point format.
type halfFormat struct {
	mantBits uint // explicit mantissa bits
	bias     int  // exponent bias
	emax     int  // largest unbiased exponent of a finite value
}

var (
	fp16Format = halfFormat{mantBits: 10, bias: 15, emax: 15}
	bf16Format = halfFormat{mantBits: 7, bias: 127, emax: 127}
)

// fromFloat64 rounds f to the format, ties to even. Overflow gives ±Inf and
// NaN gives a quiet NaN.
func (h halfFormat) fromFloat64(f float64) uint16 {
	b := math.Float64bits(f)
	sign := uint16(b>>48) & 0x8000
	exp := int(b>>52) & 0x7FF
	mant := b & (1<<52 - 1)
	expField := uint16(1<<(15-h.mantBits) - 1) // all-ones exponent field
	inf := sign | expField<<h.mantBits
	if exp == 0x7FF {
		if mant != 0 {
			return inf | 1<<(h.mantBits-1) // quiet NaN
		}
		return inf
	}
	if exp == 0 {
		// float64 zero or subnormal: far below the smallest half subnormal.
		return sign
	}
	e := exp - 1023
	m := mant | 1<<52 // significand with implicit bit, value m * 2^(e-52)
	emin := 1 - h.bias
	var shift uint
	if e >= emin {
		shift = 52 - h.mantBits
	} else {
		// Subnormal result: units of 2^(emin-mantBits).
		s := 52 - int(h.mantBits) + emin - e
		if s > 53 {
			return sign // below half of the smallest subnormal
		}
		shift = uint(s)
	}
	q := m >> shift
	rem := m & (1<<shift - 1)
	half := uint64(1) << (shift - 1)
	if rem > half || (rem == half && q&1 == 1) {
		q++
	}
	if e < emin {
		// q <= 1<<mantBits; reaching it is exactly the smallest normal,
		// whose encoding is the same integer.
		return sign | uint16(q)
	}
	if q == 1<<(h.mantBits+1) {
		q >>= 1
		e++
	}
	if e > h.emax {
		return inf
	}
	return sign | uint16(e+h.bias)<<h.mantBits | uint16(q)&(1<<h.mantBits-1)
}

// fp16ToFloat32 converts binary16 bits to float32 exactly.
func fp16ToFloat32(h uint16) float32 {
	sign := uint32(h&0x8000) << 16
	exp := uint32(h>>10) & 0x1F
	mant := uint32(h & 0x3FF)
	switch {
	case exp == 0x1F:
		return math.Float32frombits(sign | 0x7F800000 | mant<<13)
	case exp != 0:
		return math.Float32frombits(sign | (exp+127-15)<<23 | mant<<13)
	case mant == 0:
		return math.Float32frombits(sign)
	}
	// Subnormal: normalise the mantissa into float32's normal range.
	e := uint32(127 - 15 + 1)
	for mant&0x400 == 0 {
		mant <<= 1
		e--
	}
	return math.Float32frombits(sign | e<<23 | (mant&0x3FF)<<13)
}

// bf16ToFloat32 converts bfloat16 bits to float32 exactly.
func bf16ToFloat32(h uint16) float32 { return math.Float32frombits(uint32(h) << 16) }

// Float32ToFP16 rounds f to IEEE binary16 bits (nearest, ties to even).
func Float32ToFP16(f float32) uint16 { return fp16Format.fromFloat64(float64(f)) }

// Float64ToFP16 rounds f to IEEE binary16 bits (nearest, ties to even).
func Float64ToFP16(f float64) uint16 { return fp16Format.fromFloat64(f) }

// FP16ToFloat32 converts IEEE binary16 bits to float32 exactly.
func FP16ToFloat32(h uint16) float32 { return fp16ToFloat32(h) }

// Float32ToBF16 rounds f to bfloat16 bits (nearest, ties to even).
func Float32ToBF16(f float32) uint16 { return bf16Format.fromFloat64(float64(f)) }

// Float64ToBF16 rounds f to bfloat16 bits (nearest, ties to even).
func Float64ToBF16(f float64) uint16 { return bf16Format.fromFloat64(f) }

// BF16ToFloat32 converts bfloat16 bits to float32 exactly.
func BF16ToFloat32(h uint16) float32 { return bf16ToFloat32(h) }
