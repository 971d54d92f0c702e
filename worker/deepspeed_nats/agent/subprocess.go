package agent

// One runner subprocess: starting it on pipes of its own, reaping it,
// forwarding its stderr to the log, and ending the goroutines that serve it.

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/exec"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/inferq/inferq/schemas/inferqpb"
)

func waitClosed(c <-chan struct{}, d time.Duration) bool {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-c:
		return true
	case <-t.C:
		return false
	}
}

// proc is one runner subprocess and the goroutines that serve it.
type proc struct {
	cmd   *exec.Cmd
	pid   int
	stdin *os.File
	ready *inferqpb.Ready

	wmu    sync.Mutex                 // whole frames on stdin
	frames chan *inferqpb.RunnerFrame // all but health; closed at stdout EOF
	last   atomic.Int64               // unix nanos of the last frame from the runner
	hung   atomic.Bool

	exited  chan struct{} // closed once the process is reaped
	waitErr error         // valid after exited
	done    chan struct{} // closed by shut: stops the pinger and the reader
	wg      sync.WaitGroup

	tailMu sync.Mutex
	tail   []string // last stderr lines, for error messages
}

func spawn(argv, env []string, log *slog.Logger) (*proc, error) {
	// Our own pipes, not cmd's: Wait must not wait on a grandchild holding
	// stdout, and stdin needs write deadlines.
	inR, inW, err := os.Pipe()
	if err != nil {
		return nil, err
	}
	outR, outW, err := os.Pipe()
	if err != nil {
		inR.Close()
		inW.Close()
		return nil, err
	}
	errR, errW, err := os.Pipe()
	if err != nil {
		inR.Close()
		inW.Close()
		outR.Close()
		outW.Close()
		return nil, err
	}
	cmd := exec.Command(argv[0], argv[1:]...)
	cmd.Env = env
	cmd.Stdin, cmd.Stdout, cmd.Stderr = inR, outW, errW
	setProcAttr(cmd)
	err = cmd.Start()
	inR.Close()
	outW.Close()
	errW.Close()
	if err != nil {
		inW.Close()
		outR.Close()
		errR.Close()
		return nil, fmt.Errorf("start runner: %w", err)
	}
	pr := &proc{cmd: cmd, pid: cmd.Process.Pid, stdin: inW,
		frames: make(chan *inferqpb.RunnerFrame, 256), exited: make(chan struct{}), done: make(chan struct{})}
	pr.seen()
	readersDone := make(chan struct{})
	var readers sync.WaitGroup
	readers.Add(2)
	pr.wg.Add(4)
	go func() { defer pr.wg.Done(); defer readers.Done(); pr.readFrames(outR, log) }()
	go func() { defer pr.wg.Done(); defer readers.Done(); pr.readStderr(errR, log) }()
	go func() { defer pr.wg.Done(); readers.Wait(); close(readersDone) }()
	go func() {
		defer pr.wg.Done()
		pr.waitErr = cmd.Wait()
		close(pr.exited)
		// A grandchild may keep the pipes open: do not let readers outlive
		// the runner by more than a moment.
		if !waitClosed(readersDone, 2*time.Second) {
			outR.Close()
			errR.Close()
		}
		<-readersDone
		outR.Close()
		errR.Close()
	}()
	return pr, nil
}

// shut stops pr's goroutines once the process has exited.
func (pr *proc) shut() {
	select {
	case <-pr.done:
	default:
		close(pr.done)
	}
	_ = pr.stdin.Close()
	pr.wg.Wait()
}

func (pr *proc) seen() { pr.last.Store(time.Now().UnixNano()) }

// readStderr forwards the runner's log lines to slog at the level their
// prefix names (the runner logs "LEVEL logger: message").
func (pr *proc) readStderr(r io.Reader, log *slog.Logger) {
	br := bufio.NewReaderSize(r, 16<<10)
	for {
		line, err := br.ReadSlice('\n')
		if len(line) > 0 {
			text := string(bytes.TrimRight(line, "\r\n"))
			for errors.Is(err, bufio.ErrBufferFull) { // drop the rest of an overlong line
				_, err = br.ReadSlice('\n')
			}
			pr.logLine(log, text)
		}
		if err != nil && !errors.Is(err, bufio.ErrBufferFull) {
			return
		}
	}
}

func (pr *proc) logLine(log *slog.Logger, text string) {
	pr.tailMu.Lock()
	pr.tail = append(pr.tail, text)
	if len(pr.tail) > 20 {
		pr.tail = pr.tail[len(pr.tail)-20:]
	}
	pr.tailMu.Unlock()
	level := slog.LevelInfo
	switch {
	case strings.HasPrefix(text, "DEBUG "):
		level = slog.LevelDebug
	case strings.HasPrefix(text, "WARNING "):
		level = slog.LevelWarn
	case strings.HasPrefix(text, "ERROR "), strings.HasPrefix(text, "CRITICAL "), strings.HasPrefix(text, "Traceback"):
		level = slog.LevelError
	}
	log.Log(context.Background(), level, "runner: "+text, "pid", pr.pid)
}

// stderrTail is the runner's last stderr lines, once its stderr is drained.
func (pr *proc) stderrTail() string {
	pr.tailMu.Lock()
	defer pr.tailMu.Unlock()
	n := len(pr.tail)
	return strings.Join(pr.tail[max(0, n-5):], " | ")
}

// drain discards frames left from an earlier batch; false when the runner
// has gone.
func (pr *proc) drain(log *slog.Logger) bool {
	for {
		select {
		case f, ok := <-pr.frames:
			if !ok {
				return false
			}
			log.Warn("discarding stale frame from runner", "frame", fmt.Sprintf("%T", f.Frame))
		default:
			return true
		}
	}
}
