package batcher

import (
	"math/bits"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	natsjs "github.com/nats-io/nats.go/jetstream"

	"github.com/inferq/inferq/internal/blob"
	"github.com/inferq/inferq/pkg/jetstream"
	"github.com/inferq/inferq/schemas/inferqpb"
)

const numPrio = jetstream.MaxPriority - jetstream.MinPriority + 1

// entry is one job pulled from the stream.
type entry struct {
	msg  natsjs.Msg
	job  *inferqpb.Job
	seq  uint64    // stream sequence in INFERQ_JOBS
	prio int       // 0 (highest) .. 2
	recv time.Time // when this batcher pulled it: the queue delay starts here
	// alive is when the server last heard that this delivery is being
	// worked on (recv, then each InProgress): see Batcher.keepAlive.
	alive time.Time
	rows  int64
	key   string // compatibility key: jobs with equal keys may share a batch
}

// buffer is the client-side queue of pulled jobs, one FIFO per priority.
// Readers (one per priority consumer) push; the model's batching loop
// selects and removes. Each priority holds at most capRows rows; its reader
// stops pulling while it is full.
type buffer struct {
	mu      sync.Mutex
	q       [numPrio][]*entry
	rows    [numPrio]int64
	bySeq   map[uint64]*entry
	capRows int64
	n       int       // entries over all priorities
	rate    *arrivals // guarded by mu
	now     func() time.Time

	inHand atomic.Int32           // messages readers have pulled but not pushed yet
	arrive chan struct{}          // cap 1: something was pushed
	space  [numPrio]chan struct{} // cap 1: rows were removed from that priority
}

// newBuffer returns a buffer of capRows rows per priority whose arrival
// rate is estimated over about 10 × delay (see arrivals).
func newBuffer(capRows int64, delay time.Duration, now func() time.Time) *buffer {
	b := &buffer{bySeq: map[uint64]*entry{}, capRows: capRows, arrive: make(chan struct{}, 1),
		rate: newArrivals(delay), now: now}
	for p := range b.space {
		b.space[p] = make(chan struct{}, 1)
	}
	return b
}

func signal(c chan struct{}) {
	select {
	case c <- struct{}{}:
	default:
	}
}

func (b *buffer) full(p int) bool {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.rows[p] >= b.capRows
}

// push adds e. A redelivery of a job already buffered (its AckWait passed
// while it waited here) replaces the old delivery instead of duplicating it.
func (b *buffer) push(e *entry) {
	b.mu.Lock()
	if old, ok := b.bySeq[e.seq]; ok && e.seq != 0 {
		old.msg, old.alive = e.msg, e.alive
	} else {
		b.q[e.prio] = append(b.q[e.prio], e)
		b.rows[e.prio] += e.rows
		b.rate.arrived(b.now(), b.n == 0)
		b.n++
		if e.seq != 0 {
			b.bySeq[e.seq] = e
		}
	}
	b.mu.Unlock()
	signal(b.arrive)
}

// remove takes the given entries out of the buffer.
func (b *buffer) remove(es []*entry) {
	if len(es) == 0 {
		return
	}
	gone := make(map[*entry]bool, len(es))
	for _, e := range es {
		gone[e] = true
	}
	b.mu.Lock()
	var touched [numPrio]bool
	for p := range b.q {
		kept := b.q[p][:0]
		for _, e := range b.q[p] {
			if gone[e] {
				b.rows[p] -= e.rows
				delete(b.bySeq, e.seq)
				touched[p] = true
				b.n--
				continue
			}
			kept = append(kept, e)
		}
		clear(b.q[p][len(kept):])
		b.q[p] = kept
	}
	if b.n == 0 {
		b.rate.emptied(b.now())
	}
	b.mu.Unlock()
	for p, t := range touched {
		if t {
			signal(b.space[p])
		}
	}
}

// snapshot returns the buffered entries per priority (copies of the slices).
func (b *buffer) snapshot() (qs [numPrio][]*entry, total int) {
	b.mu.Lock()
	defer b.mu.Unlock()
	for p := range b.q {
		qs[p] = slices.Clone(b.q[p])
		total += len(b.q[p])
	}
	return qs, total
}

// arrivalRate is the estimated jobs per second that join an open batch,
// and whether enough has been seen to know it.
func (b *buffer) arrivalRate() (float64, bool) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.rate.rate(b.now())
}

// stale returns the entries (with their current deliveries) the server has
// not heard about for every, marking them heard of at now, and how long
// until the next one is due (every at most).
func (b *buffer) stale(now time.Time, every time.Duration) (due []staleMsg, next time.Duration) {
	b.mu.Lock()
	defer b.mu.Unlock()
	next = every
	for _, q := range b.q {
		for _, e := range q {
			left := e.alive.Add(every).Sub(now)
			if left <= 0 {
				due = append(due, staleMsg{msg: e.msg, job: e.job})
				e.alive, left = now, every
			}
			next = min(next, left)
		}
	}
	return due, next
}

// staleMsg is a buffered delivery to keep alive.
type staleMsg struct {
	msg natsjs.Msg
	job *inferqpb.Job
}

// drain empties the buffer and returns what it held.
func (b *buffer) drain() []*entry {
	b.mu.Lock()
	var es []*entry
	for p := range b.q {
		es = append(es, b.q[p]...)
		b.q[p], b.rows[p] = nil, 0
	}
	clear(b.bySeq)
	if b.n > 0 {
		b.n = 0
		b.rate.emptied(b.now())
	}
	b.mu.Unlock()
	return es
}

// drained reports whether waiting would not grow the buffer right now: no
// reader holds a pulled message it has not pushed, and no priority is at its
// cap (a full priority may have more jobs waiting in JetStream).
func (b *buffer) drained() bool {
	if b.inHand.Load() != 0 {
		return false
	}
	b.mu.Lock()
	defer b.mu.Unlock()
	for p := range b.rows {
		if b.rows[p] >= b.capRows {
			return false
		}
	}
	return true
}

// selection is the batch the loop would publish now.
type selection struct {
	entries []*entry
	rows    int64
	oldest  time.Time // earliest recv over the whole buffer
}

// choose applies the priority rule to the buffered entries:
//
//  1. Aged jobs first: a job that has waited in the batcher at least
//     agingAfter, whatever its priority, oldest first. This bounds how long
//     a lower priority can be held back by a sustained higher-priority load.
//  2. Then p0, p1, p2, each in arrival order.
//
// The first job in that order leads the batch and fixes its compatibility
// key (version, datatypes, and non-batch dims, bucketed to powers of two
// for ragged models); later jobs join only with the same key and only while
// the batch stays within maxRows. The leader is always taken, so a job larger
// than maxRows still goes out alone.
func choose(qs [numPrio][]*entry, now time.Time, agingAfter time.Duration, maxRows int64) selection {
	var sel selection
	order := make([]*entry, 0, len(qs[0])+len(qs[1])+len(qs[2]))
	var heads [numPrio]int
	// Aged prefixes of the FIFOs, merged by recv.
	for {
		best := -1
		for p := range qs {
			if h := heads[p]; h < len(qs[p]) && now.Sub(qs[p][h].recv) >= agingAfter {
				if best < 0 || qs[p][h].recv.Before(qs[best][heads[best]].recv) {
					best = p
				}
			}
		}
		if best < 0 {
			break
		}
		order = append(order, qs[best][heads[best]])
		heads[best]++
	}
	for p := range qs {
		order = append(order, qs[p][heads[p]:]...)
		if len(qs[p]) > 0 && (sel.oldest.IsZero() || qs[p][0].recv.Before(sel.oldest)) {
			sel.oldest = qs[p][0].recv
		}
	}
	if len(order) == 0 {
		return sel
	}
	key := order[0].key
	for i, e := range order {
		if e.key != key || (i > 0 && sel.rows+e.rows > maxRows) {
			continue
		}
		sel.entries = append(sel.entries, e)
		sel.rows += e.rows
		if sel.rows >= maxRows {
			break
		}
	}
	return sel
}

// trimTo keeps the leading entries of sel that fit in rows (at least one).
func (s *selection) trimTo(rows int64) {
	var n int
	var r int64
	for n < len(s.entries) && (n == 0 || r+s.entries[n].rows <= rows) {
		r += s.entries[n].rows
		n++
	}
	s.entries, s.rows = s.entries[:n], r
}

// preferredSize is the largest preferred size in (0, rows], or 0.
func preferredSize(preferred []int, rows int64) int64 {
	var best int64
	for _, p := range preferred {
		if q := int64(p); q > 0 && q <= rows && q > best {
			best = q
		}
	}
	return best
}

// compatKey is what jobs must share to be in one batch: the version and each
// input's name and datatype and, per non-batch dim, the exact size or, when
// the model pads ragged inputs, the size's power-of-two bucket, so that a
// batch pads each job by less than 2× per dim.
//
// A job with an input by reference (in the blobs bucket) shares its key with
// no other job: it is batched alone, its inputs staying references (see
// packAlone), since joining it to others would mean fetching its bytes here
// and publishing a batch too large for a message.
func compatKey(job *inferqpb.Job, ragged bool) string {
	var sb strings.Builder
	sb.WriteString(job.Version)
	if blob.HasRef(job.Inputs) {
		sb.WriteString("|blob:")
		sb.WriteString(job.Id)
	}
	for _, in := range job.Inputs {
		sb.WriteString("|")
		sb.WriteString(in.Name)
		sb.WriteString(":")
		sb.WriteString(in.Datatype)
		for _, d := range in.Shape[1:] {
			if ragged {
				d = bucket(d)
			}
			sb.WriteString(",")
			sb.WriteString(strconv.FormatInt(d, 10))
		}
	}
	return sb.String()
}

// bucket rounds d up to a power of two (0 and 1 stay).
func bucket(d int64) int64 {
	if d <= 1 {
		return d
	}
	return 1 << bits.Len64(uint64(d-1))
}
