package agent

// The runner speaks length-prefixed protobuf on its stdin and stdout: each
// frame is a little-endian uint32 length and then an inferqpb.RunnerFrame.

import (
	"bufio"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"time"

	"google.golang.org/protobuf/proto"

	"github.com/inferq/inferq/schemas/inferqpb"
)

// maxFrame bounds one frame from the runner; a larger length means the
// stream is corrupt (something wrote to the runner's stdout).
const maxFrame = 1 << 30

// send writes one frame, giving up after timeout (a runner that does not
// read its stdin is hung).
func (pr *proc) send(f *inferqpb.RunnerFrame, timeout time.Duration) error {
	body, err := proto.Marshal(f)
	if err != nil {
		return err
	}
	buf := binary.LittleEndian.AppendUint32(make([]byte, 0, 4+len(body)), uint32(len(body)))
	buf = append(buf, body...)
	pr.wmu.Lock()
	defer pr.wmu.Unlock()
	_ = pr.stdin.SetWriteDeadline(time.Now().Add(timeout))
	_, err = pr.stdin.Write(buf)
	return err
}

func readFrame(r io.Reader) (*inferqpb.RunnerFrame, error) {
	var hdr [4]byte
	if _, err := io.ReadFull(r, hdr[:]); err != nil {
		return nil, err
	}
	n := binary.LittleEndian.Uint32(hdr[:])
	if n > maxFrame {
		return nil, fmt.Errorf("frame of %d bytes: stream corrupt", n)
	}
	body := make([]byte, n)
	if _, err := io.ReadFull(r, body); err != nil {
		return nil, fmt.Errorf("truncated frame: %w", err)
	}
	f := &inferqpb.RunnerFrame{}
	if err := proto.Unmarshal(body, f); err != nil {
		return nil, fmt.Errorf("bad frame: %w", err)
	}
	return f, nil
}

func (pr *proc) readFrames(r io.Reader, log *slog.Logger) {
	defer close(pr.frames)
	br := bufio.NewReaderSize(r, 64<<10)
	for {
		f, err := readFrame(br)
		if err != nil {
			if !errors.Is(err, io.EOF) && !errors.Is(err, os.ErrClosed) {
				log.Error("runner stdout", "pid", pr.pid, "err", err)
				pr.kill() // out of step: only a restart recovers
			}
			return
		}
		pr.seen()
		if f.GetHealth() != nil {
			continue
		}
		select {
		case pr.frames <- f:
		case <-pr.done:
			return
		}
	}
}
