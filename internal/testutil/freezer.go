package testutil

import (
	"net"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// Freezer is a TCP proxy in front of a real server that can stop passing
// bytes without closing anything, as a frozen (SIGSTOPped) server or a
// black-holed link behaves. Bytes held while frozen pass once it thaws.
type Freezer struct {
	URL    string // nats://<the proxy's address>
	ln     net.Listener
	frozen atomic.Bool
	wg     sync.WaitGroup
}

// StartFreezer proxies to the server at url (nats://host:port) until the
// test ends.
func StartFreezer(t *testing.T, url string) *Freezer {
	t.Helper()
	target := strings.TrimPrefix(url, "nats://")
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	f := &Freezer{URL: "nats://" + ln.Addr().String(), ln: ln}
	f.wg.Go(func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			s, err := net.Dial("tcp", target)
			if err != nil {
				c.Close()
				continue
			}
			f.wg.Go(func() { f.pipe(s, c) })
			f.wg.Go(func() { f.pipe(c, s) })
		}
	})
	t.Cleanup(func() { f.frozen.Store(false); ln.Close() })
	return f
}

// Freeze stops (true) or resumes (false) the flow of bytes both ways.
func (f *Freezer) Freeze(on bool) { f.frozen.Store(on) }

func (f *Freezer) pipe(dst, src net.Conn) {
	defer dst.Close()
	buf := make([]byte, 32<<10)
	for {
		n, err := src.Read(buf)
		for f.frozen.Load() {
			time.Sleep(5 * time.Millisecond) // hold the bytes: nothing passes, nothing closes
		}
		if n > 0 {
			if _, werr := dst.Write(buf[:n]); werr != nil {
				return
			}
		}
		if err != nil {
			return
		}
	}
}
