package lifecycle

import (
	"crypto/sha256"
	"encoding/hex"
	"slices"
	"strconv"

	"github.com/inferq/inferq/schemas/inferqpb"
)

// Kinds of message id, the last part of <job>:<attempt>:<kind>. A kind
// names what happened, so that each happening is stored once per attempt
// whoever reports it (a worker and resultsvc failing the same job publish
// the same id) while different happenings of one attempt are all kept.
const (
	KindQueued    = "queued"    // a replay's new attempt
	KindRunning   = "running"   // a worker started the job
	KindResult    = "result"    // the job succeeded
	KindFailed    = "failed"    // a worker (or resultsvc for it) ended the job failed or cancelled, or it could not be batched
	KindExpired   = "expired"   // its timeout passed before it was batched
	KindCancelled = "cancelled" // a client cancelled it
	KindDead      = "dead"      // its dead-letter record
)

// MsgID is the Nats-Msg-Id of a job's message of one kind in one attempt:
// <job>:<attempt>:<kind>. JetStream drops a second message with the same id
// within the stream's duplicate window, which makes every publish of the
// lifecycle safe to repeat.
func MsgID(job string, attempt uint32, kind string) string {
	b := make([]byte, 0, len(job)+len(kind)+12)
	b = append(b, job...)
	b = append(b, ':')
	b = strconv.AppendUint(b, uint64(attempt), 10)
	b = append(b, ':')
	b = append(b, kind...)
	return string(b)
}

// ReplayMsgID is the Nats-Msg-Id of a job published again by a replay as
// its attempt: <job>:r<attempt>, distinct from ingress's first publish
// (the bare job id) so the duplicate window does not swallow it.
func ReplayMsgID(job string, attempt uint32) string {
	return job + ":r" + strconv.FormatUint(uint64(attempt), 10)
}

// EventsMsgID is the Nats-Msg-Id of a JobEvents message: a hash of its
// jobs' ids and attempts, then ":events". The same jobs reported again (a
// batch redelivered after its worker died) give the same id.
func EventsMsgID(events []*inferqpb.JobEvent) string {
	jobs := make([]*inferqpb.BatchJob, len(events))
	for i, e := range events {
		jobs[i] = &inferqpb.BatchJob{Id: e.JobId, Attempt: e.Attempt}
	}
	return BatchID(jobs) + ":events"
}

// BatchID is the id (and Nats-Msg-Id) of a batch of these jobs: a hash of
// their ids and attempts in id order, so that re-batching the same jobs
// after a batcher crash publishes the same id and JetStream drops the copy.
func BatchID(jobs []*inferqpb.BatchJob) string {
	keys := make([]string, len(jobs))
	for i, j := range jobs {
		keys[i] = j.Id + "\x00" + strconv.FormatUint(uint64(j.Attempt), 10)
	}
	slices.Sort(keys)
	h := sha256.New()
	for _, k := range keys {
		h.Write([]byte(k))
		h.Write([]byte{0})
	}
	return hex.EncodeToString(h.Sum(nil)[:13])
}
