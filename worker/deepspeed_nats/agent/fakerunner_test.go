package agent

import (
	"bufio"
	"bytes"
	"encoding/binary"
	"errors"
	"io"
	"os"
	"testing"

	"google.golang.org/protobuf/proto"

	"github.com/inferq/inferq/schemas/inferqpb"
)

// TestMain turns the test binary into a fake model runner when
// INFERQ_FAKE_RUNNER is set, so the Process tests that need a runner to
// crash on cue, or to report a CUDA device, run without Python or a GPU.
func TestMain(m *testing.M) {
	if os.Getenv("INFERQ_FAKE_RUNNER") == "1" {
		os.Exit(fakeRunner(os.Stdin, os.Stdout))
	}
	os.Exit(m.Run())
}

// fakeRunner speaks the runner protocol: Ready with the device named by
// INFERQ_FAKE_DEVICE and capacity 4, identity results, and an exit (a
// crash) on any batch holding a job whose parameters mention "crash". With
// INFERQ_FAKE_LOAD_ERROR set it refuses the Load with that message and
// exits, as the Python runner does for a model it cannot load.
func fakeRunner(in io.Reader, out io.Writer) int {
	r := bufio.NewReader(in)
	w := bufio.NewWriter(out)
	write := func(f *inferqpb.RunnerFrame) {
		body, _ := proto.Marshal(f)
		_, _ = w.Write(binary.LittleEndian.AppendUint32(nil, uint32(len(body))))
		_, _ = w.Write(body)
		_ = w.Flush()
	}
	for {
		f, err := readFrame(r)
		if errors.Is(err, io.EOF) {
			return 0
		}
		if err != nil {
			return 2
		}
		switch x := f.Frame.(type) {
		case *inferqpb.RunnerFrame_Load:
			if msg := os.Getenv("INFERQ_FAKE_LOAD_ERROR"); msg != "" {
				write(&inferqpb.RunnerFrame{Frame: &inferqpb.RunnerFrame_Error{Error: &inferqpb.RunnerError{
					Error: &inferqpb.Error{Code: "load_failed", Message: msg}}}})
				return 1
			}
			write(&inferqpb.RunnerFrame{Frame: &inferqpb.RunnerFrame_Ready{Ready: &inferqpb.Ready{
				Model: x.Load.Model, Device: os.Getenv("INFERQ_FAKE_DEVICE"), Capacity: 4}}})
		case *inferqpb.RunnerFrame_Health:
			write(f)
		case *inferqpb.RunnerFrame_Batch:
			for _, j := range x.Batch.Jobs {
				if bytes.Contains(j.ParametersJson, []byte("crash")) {
					os.Exit(3)
				}
			}
			res, err := splitResult(x.Batch, []*inferqpb.Tensor{renamed(x.Batch.Inputs[0], "OUTPUT0")})
			if err != nil {
				write(&inferqpb.RunnerFrame{Frame: &inferqpb.RunnerFrame_Error{Error: &inferqpb.RunnerError{
					BatchId: x.Batch.Id, Error: &inferqpb.Error{Code: "internal", Message: err.Error()}}}})
				continue
			}
			write(&inferqpb.RunnerFrame{Frame: &inferqpb.RunnerFrame_Result{Result: res}})
		}
	}
}
