//go:build unix

package ingress

import (
	"bytes"
	"math"
	"math/rand/v2"
	"strconv"
	"syscall"
	"testing"
	"time"

	"github.com/inferq/inferq/pkg/tensor"
)

// BenchmarkDecode16MiBFP32 reads and decodes one 16 MiB FP32 input for
// identity from a body in the binary tensor data form and from JSON
// numbers, as the ingress does (the binary body copied into its buffer,
// the JSON one scanned number by number). MB/s counts tensor bytes per
// second of wall time, cpu-MB/s per second of this process's CPU time,
// which a busy machine disturbs less.
func BenchmarkDecode16MiBFP32(b *testing.B) {
	const n = 4 << 20 // elements: 16 MiB of FP32
	m := testModels(b)["identity"]
	rng := rand.New(rand.NewPCG(1, 2))
	raw := make([]byte, 0, 4*n)
	for range n {
		raw = appendLE32(raw, math.Float32bits(rng.Float32()*2-1))
	}
	t := &tensor.Tensor{Name: "INPUT0", Datatype: tensor.FP32, Shape: []int64{1, n}, Data: raw}
	data, err := tensor.AppendJSONData(nil, t)
	if err != nil {
		b.Fatal(err)
	}
	jsonBody := append([]byte(`{"inputs":[{"name":"INPUT0","shape":[1,`+strconv.Itoa(n)+`],"datatype":"FP32","data":`), data...)
	jsonBody = append(jsonBody, "}]}"...)
	head := `{"inputs":[{"name":"INPUT0","shape":[1,` + strconv.Itoa(n) + `],"datatype":"FP32","parameters":{"binary_data_size":` + strconv.Itoa(len(raw)) + `}}]}`
	binBody := append([]byte(head), raw...)

	run := func(b *testing.B, body []byte, decode func() (*tensor.Tensor, error)) {
		cpu0 := cpuTime()
		for b.Loop() {
			in, err := decode()
			if err != nil || !bytes.Equal(in.Data, raw) {
				b.Fatal(err)
			}
		}
		mb := float64(len(raw)) * float64(b.N) / 1e6
		b.ReportMetric(mb/b.Elapsed().Seconds(), "MB/s")
		b.ReportMetric(mb/(cpuTime()-cpu0).Seconds(), "cpu-MB/s")
		b.ReportMetric(float64(len(body)), "body_bytes")
	}
	b.Run("binary", func(b *testing.B) {
		run(b, binBody, func() (*tensor.Tensor, error) {
			var buf bytes.Buffer
			_, in, _, _, err := readBinary(bytes.NewReader(binBody), strconv.Itoa(len(head)), int64(len(binBody)), &buf, m)
			if err != nil {
				return nil, err
			}
			return in[0], nil
		})
	})
	b.Run("json", func(b *testing.B) {
		run(b, jsonBody, func() (*tensor.Tensor, error) {
			_, in, _, err := decodeRequest(bytes.NewReader(jsonBody), m)
			if err != nil {
				return nil, err
			}
			return in[0], nil
		})
	})
}

// cpuTime is the user and system CPU time this process has used.
func cpuTime() time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		return 0
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

func appendLE32(b []byte, v uint32) []byte {
	return append(b, byte(v), byte(v>>8), byte(v>>16), byte(v>>24))
}
