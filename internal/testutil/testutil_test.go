package testutil

import (
	"fmt"
	"runtime"
	"strings"
	"testing"
	"time"
)

// fatalTB records the first Fatalf and ends its goroutine, as testing does.
type fatalTB struct {
	testing.TB
	msg string
}

func (f *fatalTB) Helper() {}
func (f *fatalTB) Fatalf(format string, args ...any) {
	f.msg = fmt.Sprintf(format, args...)
	runtime.Goexit()
}

func TestEventually(t *testing.T) {
	calls := 0
	Eventually(t, time.Second, func() bool { calls++; return calls == 3 }, "never")
	if calls != 3 {
		t.Fatalf("cond called %d times, want 3 (polled until it held)", calls)
	}

	f := &fatalTB{TB: t}
	done := make(chan struct{})
	start := time.Now()
	go func() {
		defer close(done)
		Eventually(f, 50*time.Millisecond, func() bool { return false }, "job %s not %s", "j1", "done")
	}()
	<-done
	if waited := time.Since(start); waited < 50*time.Millisecond || waited > 5*time.Second {
		t.Errorf("gave up after %v, want just past 50ms", waited)
	}
	if !strings.Contains(f.msg, "50ms") || !strings.HasSuffix(f.msg, "job j1 not done") {
		t.Errorf("failure message %q", f.msg)
	}
}
