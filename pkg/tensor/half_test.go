package tensor

import (
	"math"
	"testing"
)

func TestHalfKnownBits(t *testing.T) {
	tests := []struct {
		name string
		in   float64
		fp16 uint16
		bf16 uint16
	}{
		{name: "one", in: 1, fp16: 0x3C00, bf16: 0x3F80},
		{name: "minus two", in: -2, fp16: 0xC000, bf16: 0xC000},
		{name: "zero", in: 0, fp16: 0x0000, bf16: 0x0000},
		{name: "negative zero", in: math.Copysign(0, -1), fp16: 0x8000, bf16: 0x8000},
		{name: "half", in: 0.5, fp16: 0x3800, bf16: 0x3F00},
		{name: "tenth", in: 0.1, fp16: 0x2E66, bf16: 0x3DCD},
		{name: "third", in: 1.0 / 3, fp16: 0x3555, bf16: 0x3EAB},
		{name: "fp16 max", in: 65504, fp16: 0x7BFF, bf16: 0x4780},
		{name: "fp16 max rounds down", in: 65519, fp16: 0x7BFF, bf16: 0x4780},
		{name: "fp16 overflow", in: 65520, fp16: 0x7C00, bf16: 0x4780},
		// Ties go to the even mantissa.
		{name: "fp16 tie down", in: 1 + 1.0/2048, fp16: 0x3C00, bf16: 0x3F80},
		{name: "fp16 tie up", in: 1 + 3.0/2048, fp16: 0x3C02, bf16: 0x3F80},
		{name: "fp16 above tie", in: 1 + 1.0/2048 + 1.0/(1<<20), fp16: 0x3C01, bf16: 0x3F80},
		{name: "bf16 tie down", in: 1 + 1.0/256, fp16: 0x3C04, bf16: 0x3F80},
		{name: "bf16 tie up", in: 1 + 3.0/256, fp16: 0x3C0C, bf16: 0x3F82},
		{name: "fp16 mantissa carry", in: 2 - 1.0/4096, fp16: 0x4000, bf16: 0x4000},
		// Subnormals.
		{name: "fp16 min subnormal", in: math.Ldexp(1, -24), fp16: 0x0001, bf16: 0x3380},
		{name: "fp16 half min subnormal tie to zero", in: math.Ldexp(1, -25), fp16: 0x0000, bf16: 0x3300},
		{name: "fp16 1.5 min subnormal tie up", in: math.Ldexp(3, -25), fp16: 0x0002, bf16: 0x33C0},
		{name: "fp16 just above half", in: math.Ldexp(1, -25) * (1 + 1.0/(1<<40)), fp16: 0x0001, bf16: 0x3300},
		{name: "fp16 largest subnormal", in: math.Ldexp(1023, -24), fp16: 0x03FF, bf16: 0x3880},
		{name: "fp16 subnormal to normal", in: math.Ldexp(2047, -25), fp16: 0x0400, bf16: 0x3880},
		{name: "fp16 underflow", in: 1e-10, fp16: 0x0000, bf16: 0x2EDC},
		{name: "bf16 min subnormal", in: math.Ldexp(1, -133), fp16: 0, bf16: 0x0001},
		{name: "bf16 max", in: float64(math.Float32frombits(0x7F7F0000)), fp16: 0x7C00, bf16: 0x7F7F},
		{name: "bf16 overflow", in: 3.4e38, fp16: 0x7C00, bf16: 0x7F80},
		{name: "float64 subnormal", in: 5e-324, fp16: 0, bf16: 0},
		{name: "inf", in: math.Inf(-1), fp16: 0xFC00, bf16: 0xFF80},
		{name: "nan", in: math.NaN(), fp16: 0x7E00, bf16: 0x7FC0},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			if got := Float64ToFP16(tc.in); got != tc.fp16 {
				t.Errorf("FP16(%g) = %#04x, want %#04x", tc.in, got, tc.fp16)
			}
			if got := Float64ToBF16(tc.in); got != tc.bf16 {
				t.Errorf("BF16(%g) = %#04x, want %#04x", tc.in, got, tc.bf16)
			}
		})
	}
}

// TestHalfExhaustive checks every 16-bit pattern: widening is exact,
// narrowing the widened value gives the pattern back, and the midpoint to
// the next value rounds to whichever of the two is even.
func TestHalfExhaustive(t *testing.T) {
	formats := []struct {
		name  string
		h     halfFormat
		widen func(uint16) float32
	}{
		{"fp16", fp16Format, fp16ToFloat32},
		{"bf16", bf16Format, bf16ToFloat32},
	}
	for _, f := range formats {
		t.Run(f.name, func(t *testing.T) {
			for i := 0; i < 1<<16; i++ {
				bits := uint16(i)
				v := float64(f.widen(bits))
				if math.IsNaN(v) {
					if got := f.h.fromFloat64(v); got&0x7FFF <= uint16(1<<(15-f.h.mantBits)-1)<<f.h.mantBits {
						t.Fatalf("%#04x: NaN narrowed to non-NaN %#04x", bits, got)
					}
					continue
				}
				if got := f.h.fromFloat64(v); got != bits {
					t.Fatalf("%#04x -> %g -> %#04x", bits, v, got)
				}
				if math.IsInf(v, 0) {
					continue
				}
				next := bits + 1 // next magnitude, same sign
				nv := float64(f.widen(next))
				if math.IsInf(nv, 0) || math.IsNaN(nv) {
					continue
				}
				mid := (v + nv) / 2 // exact in float64
				even := bits
				if bits&1 == 1 {
					even = next
				}
				if got := f.h.fromFloat64(mid); got != even {
					t.Fatalf("midpoint of %#04x,%#04x (%g) -> %#04x, want %#04x", bits, next, mid, got, even)
				}
				if above := math.Nextafter(mid, nv); f.h.fromFloat64(above) != next {
					t.Fatalf("just above midpoint of %#04x -> %#04x", bits, f.h.fromFloat64(above))
				}
				if below := math.Nextafter(mid, v); f.h.fromFloat64(below) != bits {
					t.Fatalf("just below midpoint of %#04x -> %#04x", bits, f.h.fromFloat64(below))
				}
			}
		})
	}
}

func TestBF16MatchesFloat32Truncation(t *testing.T) {
	// For float32 inputs, RNE to bf16 has a well-known bit formula; use it
	// as an independent reference.
	ref := func(f float32) uint16 {
		b := math.Float32bits(f)
		return uint16((b + 0x7FFF + (b>>16)&1) >> 16)
	}
	for _, f := range []float32{1, 1.00390625, 1.01171875, 3.14159, -2.71828, 1e-30, 6.5e37, 0.1, 123456.789} {
		if got, want := Float32ToBF16(f), ref(f); got != want {
			t.Errorf("Float32ToBF16(%g) = %#04x, want %#04x", f, got, want)
		}
	}
	for i := uint32(0); i < 1<<20; i++ {
		b := i*4093 + 0x00800000 // spread over the finite range
		f := math.Float32frombits(b & 0x7F7FFFFF)
		if got, want := Float32ToBF16(f), ref(f); got != want {
			t.Fatalf("Float32ToBF16(%g / %#08x) = %#04x, want %#04x", f, b, got, want)
		}
	}
}

func TestHalfPublicWrappers(t *testing.T) {
	if Float32ToFP16(1) != 0x3C00 || FP16ToFloat32(0x3C00) != 1 {
		t.Fatal("FP16 wrappers")
	}
	if Float32ToBF16(1) != 0x3F80 || BF16ToFloat32(0x3F80) != 1 {
		t.Fatal("BF16 wrappers")
	}
}
