package lifecycle

import (
	"sync"
	"time"

	natsjs "github.com/nats-io/nats.go/jetstream"
)

// DefaultAckHold is how long an AckHolder keeps the newest message back.
// Under load the next message comes sooner, so the stream never empties;
// when load stops, the last message is acked this much later.
const DefaultAckHold = 25 * time.Millisecond

// AckHolder acknowledges the messages of a work-queue stream one step
// late: the newest message given to Ack is held back until the next one
// comes, or until the hold passes, and the one it replaces is acked at
// once. Why: when an ack empties a file-backed stream, nats-server replaces
// the stream's last block with a new file, inside the stream's lock. On the
// 2-core test VM a file creation costs about 0.45 ms, so a stream that
// emptied after every batch stalled publishes to it once per batch (see
// docs/benchmarks.md). A stream that still holds one finished message does
// not empty. The cost: a message acked late is delivered again if its
// consumer dies within the hold, which the lifecycle already tolerates
// (every message is safe to repeat).
type AckHolder struct {
	hold time.Duration
	ack  func(natsjs.Msg)

	mu     sync.Mutex
	held   natsjs.Msg
	timer  *time.Timer
	closed bool
}

// NewAckHolder holds messages for hold (DefaultAckHold if 0) and
// acknowledges each with ack.
func NewAckHolder(hold time.Duration, ack func(natsjs.Msg)) *AckHolder {
	if hold <= 0 {
		hold = DefaultAckHold
	}
	return &AckHolder{hold: hold, ack: ack}
}

// Ack holds msg and acknowledges the message held before it. After Flush it
// acknowledges msg at once.
func (h *AckHolder) Ack(msg natsjs.Msg) {
	h.mu.Lock()
	if h.closed {
		h.mu.Unlock()
		h.ack(msg)
		return
	}
	prev := h.held
	h.held = msg
	if h.timer == nil {
		h.timer = time.AfterFunc(h.hold, h.release)
	} else {
		h.timer.Reset(h.hold)
	}
	h.mu.Unlock()
	if prev != nil {
		h.ack(prev)
	}
}

// release acknowledges the held message, if any.
func (h *AckHolder) release() {
	h.mu.Lock()
	msg := h.held
	h.held = nil
	h.mu.Unlock()
	if msg != nil {
		h.ack(msg)
	}
}

// Flush acknowledges the held message now and makes later Acks immediate;
// a consumer calls it when it stops.
func (h *AckHolder) Flush() {
	h.mu.Lock()
	h.closed = true
	if h.timer != nil {
		h.timer.Stop()
	}
	h.mu.Unlock()
	h.release()
}
