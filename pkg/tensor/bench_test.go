package tensor

import (
	"fmt"
	"math"
	"strconv"
	"testing"
)

type benchCase struct {
	name  string
	dt    DataType
	parts int
	inner int64
}

var batchCases = []benchCase{
	{name: "32x[1,16]INT32", dt: Int32, parts: 32, inner: 16},
	{name: "32x[1,4096]FP32", dt: FP32, parts: 32, inner: 4096},
}

func benchParts(c benchCase) []*Tensor {
	parts := make([]*Tensor, c.parts)
	for i := range parts {
		data := make([]byte, c.inner*int64(c.dt.ElemSize()))
		for j := range data {
			data[j] = byte(i + j)
		}
		parts[i] = &Tensor{Name: "x", Datatype: c.dt, Shape: []int64{1, c.inner}, Data: data}
	}
	return parts
}

func BenchmarkConcat(b *testing.B) {
	for _, c := range batchCases {
		b.Run(c.name, func(b *testing.B) {
			parts := benchParts(c)
			b.SetBytes(int64(c.parts) * c.inner * int64(c.dt.ElemSize()))
			b.ReportAllocs()
			for b.Loop() {
				if _, err := Concat("x", parts, false); err != nil {
					b.Fatal(err)
				}
			}
			b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N)/float64(c.parts), "ns/row")
		})
	}
	b.Run("ragged-32x[1,1..32]INT32", func(b *testing.B) {
		parts := make([]*Tensor, 32)
		for i := range parts {
			parts[i] = &Tensor{Name: "x", Datatype: Int32, Shape: []int64{1, int64(i + 1)}, Data: make([]byte, (i+1)*4)}
		}
		b.SetBytes(32 * 32 * 4)
		b.ReportAllocs()
		for b.Loop() {
			if _, err := Concat("x", parts, true); err != nil {
				b.Fatal(err)
			}
		}
		b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N)/32, "ns/row")
	})
}

func BenchmarkSplit(b *testing.B) {
	for _, c := range batchCases {
		b.Run(c.name, func(b *testing.B) {
			batched, err := Concat("x", benchParts(c), false)
			if err != nil {
				b.Fatal(err)
			}
			b.SetBytes(int64(len(batched.Tensor.Data)))
			b.ReportAllocs()
			for b.Loop() {
				if _, err := Split(batched.Tensor, batched.Rows); err != nil {
					b.Fatal(err)
				}
			}
			b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N)/float64(c.parts), "ns/row")
		})
	}
	b.Run("bytes-32x[1,16]", func(b *testing.B) {
		parts := make([]*Tensor, 32)
		for i := range parts {
			var data []byte
			for j := 0; j < 16; j++ {
				data = append(data, strs(fmt.Sprintf("token-%d-%d", i, j))...)
			}
			parts[i] = &Tensor{Name: "x", Datatype: Bytes, Shape: []int64{1, 16}, Data: data}
		}
		batched, err := Concat("x", parts, false)
		if err != nil {
			b.Fatal(err)
		}
		b.SetBytes(int64(len(batched.Tensor.Data)))
		b.ReportAllocs()
		for b.Loop() {
			if _, err := Split(batched.Tensor, batched.Rows); err != nil {
				b.Fatal(err)
			}
		}
		b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N)/32, "ns/row")
	})
}

// jsonCases returns request-like JSON for the benchmarked tensors.
func jsonCases() []struct {
	name string
	j    *JSON
} {
	ints := []byte{'['}
	for i := 0; i < 16; i++ {
		if i > 0 {
			ints = append(ints, ',')
		}
		ints = strconv.AppendInt(ints, int64(i*1000-7000), 10)
	}
	ints = append(ints, ']')
	floats := []byte{'['}
	for i := 0; i < 4096; i++ {
		if i > 0 {
			floats = append(floats, ',')
		}
		floats = strconv.AppendFloat(floats, float64(float32(math.Sin(float64(i)))), 'g', -1, 32)
	}
	floats = append(floats, ']')
	return []struct {
		name string
		j    *JSON
	}{
		{"[1,16]INT32", &JSON{Name: "INPUT0", Datatype: "INT32", Shape: []int64{1, 16}, Data: ints}},
		{"[1,4096]FP32", &JSON{Name: "INPUT0", Datatype: "FP32", Shape: []int64{1, 4096}, Data: floats}},
	}
}

func BenchmarkFromJSON(b *testing.B) {
	for _, c := range jsonCases() {
		b.Run(c.name, func(b *testing.B) {
			b.SetBytes(int64(len(c.j.Data)))
			b.ReportAllocs()
			n := float64((&Tensor{Shape: c.j.Shape}).NumElements())
			for b.Loop() {
				if _, err := FromJSON(c.j); err != nil {
					b.Fatal(err)
				}
			}
			b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N)/n, "ns/elem")
		})
	}
}

func BenchmarkToJSON(b *testing.B) {
	for _, c := range jsonCases() {
		t, err := FromJSON(c.j)
		if err != nil {
			b.Fatal(err)
		}
		n := float64(t.NumElements())
		b.Run(c.name, func(b *testing.B) {
			b.SetBytes(int64(len(t.Data)))
			b.ReportAllocs()
			for b.Loop() {
				if _, err := ToJSON(t); err != nil {
					b.Fatal(err)
				}
			}
			b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N)/n, "ns/elem")
		})
		b.Run(c.name+"/append-reuse", func(b *testing.B) {
			b.SetBytes(int64(len(t.Data)))
			b.ReportAllocs()
			var buf []byte
			for b.Loop() {
				if buf, err = AppendJSONData(buf[:0], t); err != nil {
					b.Fatal(err)
				}
			}
			b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N)/n, "ns/elem")
		})
	}
}
