package lifecycle

import (
	"context"
	"fmt"
	"time"

	"github.com/nats-io/nats.go"
	natsjs "github.com/nats-io/nats.go/jetstream"
	"google.golang.org/protobuf/proto"

	"github.com/inferq/inferq/pkg/jetstream"
	"github.com/inferq/inferq/schemas/inferqpb"
)

// Error codes the lifecycle itself gives to jobs it ends.
const (
	CodeCancelled  = "cancelled"   // a client cancelled the job
	CodeExpired    = "expired"     // its timeout passed before it was batched
	CodeMaxDeliver = "max_deliver" // its batch was delivered max_deliver times and never finished
)

// Event is one job event and where it goes. Build it with the constructor
// for what happened (RunningEvent, FailedEvent, ...), never by hand: the
// constructor fixes the event's subject kind and message id.
type Event struct {
	// Kind is the last token of the event's subject,
	// <prefix>.events.<model>.<kind>: jetstream.EventQueued, EventRunning,
	// EventResult or EventFailed (cancelled and expired jobs travel as
	// failed).
	Kind string
	// MsgID is the event's Nats-Msg-Id (see MsgID).
	MsgID string
	Msg   *inferqpb.JobEvent
}

// Subject is where e is published.
func (e Event) Subject(t jetstream.Topology) string { return t.EventSubject(e.Msg.GetModel(), e.Kind) }

// NewMsg is e as a message, with ctx's trace context.
func (e Event) NewMsg(ctx context.Context, t jetstream.Topology) (*nats.Msg, error) {
	return jetstream.NewMsg(ctx, e.Subject(t), e.Msg, e.MsgID)
}

// Publish publishes e and waits for its PubAck.
func (e Event) Publish(ctx context.Context, js natsjs.JetStream, t jetstream.Topology) (*natsjs.PubAck, error) {
	return jetstream.Publish(ctx, js, e.Subject(t), e.Msg, e.MsgID)
}

// Status is the status e moves its job to.
func (e Event) Status() Status {
	s, _ := StatusOf(e.Msg.GetStatus())
	return s
}

// DecodeEvent reads a job event from the events stream.
func DecodeEvent(data []byte) (*inferqpb.JobEvent, error) {
	ev := &inferqpb.JobEvent{}
	if err := proto.Unmarshal(data, ev); err != nil {
		return nil, fmt.Errorf("job event: %w", err)
	}
	return ev, nil
}

func newEvent(kind, idKind string, st Status, at time.Time, ev *inferqpb.JobEvent) Event {
	ev.Status, ev.TimeUnixNano = st.Proto(), at.UnixNano()
	return Event{Kind: kind, MsgID: MsgID(ev.JobId, ev.Attempt, idKind), Msg: ev}
}

// Events of a job not yet in a batch: ingress and the batcher hold the job.

func ofJob(job *inferqpb.Job, jobsSeq uint64) *inferqpb.JobEvent {
	return &inferqpb.JobEvent{JobId: job.Id, Tenant: job.Tenant, Model: job.Model, Version: job.Version,
		Attempt: job.Attempt, JobsSeq: jobsSeq, CreatedUnixNano: job.CreatedUnixNano, CallbackUrl: job.CallbackUrl}
}

// ReplayEvent queues job again as its attempt job.Attempt (a replay).
func ReplayEvent(job *inferqpb.Job, at time.Time) Event {
	return newEvent(jetstream.EventQueued, KindQueued, Queued, at, ofJob(job, 0))
}

// ExpiredEvent ends a job whose timeout passed before it was batched;
// jobsSeq is its sequence in the jobs stream.
func ExpiredEvent(job *inferqpb.Job, jobsSeq uint64, at time.Time) Event {
	ev := ofJob(job, jobsSeq)
	ev.Error = &inferqpb.Error{Code: CodeExpired, Message: "the job's timeout passed before it was batched"}
	return newEvent(jetstream.EventFailed, KindExpired, Expired, at, ev)
}

// RejectedEvent fails a job the batcher can never batch.
func RejectedEvent(job *inferqpb.Job, jobsSeq uint64, at time.Time, code, message string) Event {
	ev := ofJob(job, jobsSeq)
	ev.Error = &inferqpb.Error{Code: code, Message: message}
	return newEvent(jetstream.EventFailed, KindFailed, Failed, at, ev)
}

// JobRef names an attempt of a job known by its record.
type JobRef struct {
	ID, Tenant, Model, Version string
	Attempt                    uint32
	CreatedAt                  time.Time // when it was accepted; zero if unknown
	JobsSeq                    uint64    // its place in INFERQ_JOBS; 0 if unknown
	CallbackURL                string    // where its end is sent as a webhook; empty: nowhere
}

// CancelRequestEvent cancels attempt ref.Attempt of a job at a client's
// request. Its id differs from a worker's end of the job, so both are
// stored; the first applied wins.
func CancelRequestEvent(ref JobRef, at time.Time) Event {
	ev := &inferqpb.JobEvent{JobId: ref.ID, Tenant: ref.Tenant, Model: ref.Model, Version: ref.Version, Attempt: ref.Attempt,
		Error: &inferqpb.Error{Code: CodeCancelled, Message: "cancelled by the client"}}
	if !ref.CreatedAt.IsZero() {
		ev.CreatedUnixNano = ref.CreatedAt.UnixNano()
	}
	ev.JobsSeq, ev.CallbackUrl = ref.JobsSeq, ref.CallbackURL
	return newEvent(jetstream.EventFailed, KindCancelled, Cancelled, at, ev)
}

// Events of a job in a batch: workers, and resultsvc for a batch no worker
// finished. worker is the reporting worker's name, empty for resultsvc.

func ofBatchJob(b *inferqpb.Batch, j *inferqpb.BatchJob, worker string) *inferqpb.JobEvent {
	return &inferqpb.JobEvent{JobId: j.Id, Tenant: j.Tenant, Model: b.Model, Version: b.Version, Attempt: j.Attempt,
		BatchId: b.Id, Worker: worker, RequestId: j.RequestId, JobsSeq: j.JobsSeq, CreatedUnixNano: j.CreatedUnixNano,
		TraceContext: j.TraceContext, CallbackUrl: j.CallbackUrl}
}

// RunningEvent reports that a worker started job j of batch b.
func RunningEvent(b *inferqpb.Batch, j *inferqpb.BatchJob, worker string, at time.Time) Event {
	ev := ofBatchJob(b, j, worker)
	ev.RequestId = "" // only a result is rendered with it
	return newEvent(jetstream.EventRunning, KindRunning, Running, at, ev)
}

// SucceededEvent ends job j of batch b with its outputs.
func SucceededEvent(b *inferqpb.Batch, j *inferqpb.BatchJob, worker string, at time.Time, outputs []*inferqpb.Tensor) Event {
	ev := ofBatchJob(b, j, worker)
	ev.Outputs = outputs
	return newEvent(jetstream.EventResult, KindResult, Succeeded, at, ev)
}

// FailedEvent ends job j of batch b failed. A worker and resultsvc ending
// the same attempt publish the same id, so only the first is stored.
func FailedEvent(b *inferqpb.Batch, j *inferqpb.BatchJob, worker string, at time.Time, err *inferqpb.Error) Event {
	ev := ofBatchJob(b, j, worker)
	ev.Error = err
	return newEvent(jetstream.EventFailed, KindFailed, Failed, at, ev)
}

// CancelledEvent ends job j of batch b cancelled: the runner stopped it
// because it was cancelled.
func CancelledEvent(b *inferqpb.Batch, j *inferqpb.BatchJob, worker string, at time.Time, err *inferqpb.Error) Event {
	ev := ofBatchJob(b, j, worker)
	ev.Error = err
	return newEvent(jetstream.EventFailed, KindFailed, Cancelled, at, ev)
}

// EventsMsgs packs events (a batch's terminal events, all of model) into
// JobEvents messages on <prefix>.events.<model>.batch, as few as fit in
// maxPayload bytes each: usually one. Each message's id is EventsMsgID of
// the jobs it carries, so a batch run again publishes the same ids, while
// a different split (outputs of another size) never shares an id with a
// message that carries other jobs. Each event carries its job's trace
// context in its body; ctx's goes in the headers.
func EventsMsgs(ctx context.Context, t jetstream.Topology, model string, events []Event, maxPayload int) ([]*nats.Msg, error) {
	const headroom = 4 << 10 // headers and framing
	limit := max(maxPayload-headroom, 1)
	var (
		out  []*nats.Msg
		part = &inferqpb.JobEvents{}
		size int
	)
	flush := func() error {
		if len(part.Events) == 0 {
			return nil
		}
		msg, err := jetstream.NewMsg(ctx, t.EventSubject(model, jetstream.EventBatch), part, EventsMsgID(part.Events))
		if err != nil {
			return fmt.Errorf("job events of model %s: %w", model, err)
		}
		out = append(out, msg)
		part, size = &inferqpb.JobEvents{}, 0
		return nil
	}
	for _, e := range events {
		n := proto.Size(e.Msg) + 8 // the field's tag and length
		if size+n > limit {
			if err := flush(); err != nil {
				return nil, err
			}
		}
		part.Events = append(part.Events, e.Msg)
		size += n
	}
	if err := flush(); err != nil {
		return nil, err
	}
	return out, nil
}

// DecodeEvents reads a JobEvents message from the events stream.
func DecodeEvents(data []byte) (*inferqpb.JobEvents, error) {
	evs := &inferqpb.JobEvents{}
	if err := proto.Unmarshal(data, evs); err != nil {
		return nil, fmt.Errorf("job events: %w", err)
	}
	return evs, nil
}
