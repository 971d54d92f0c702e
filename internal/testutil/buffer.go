package testutil

import (
	"bytes"
	"sync"
)

// Buffer collects output that several goroutines write at once (a service's
// slog sink, a child process's stdout and stderr), for tests to read back.
type Buffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *Buffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

// String returns everything written so far.
func (s *Buffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}
