// Package lifecycle owns the job-lifecycle protocol: the statuses a job
// passes through and their forward-only order, the message ids JetStream
// deduplicates on, and the events, dead letters and token chunks that
// ingress, the batcher, workers and resultsvc exchange. Components call it
// and never spell an id or build one of these messages themselves, so the
// protocol cannot drift between them.
package lifecycle

import "github.com/inferq/inferq/schemas/inferqpb"

// Status is a job's place in its life: queued → running → one terminal status.
type Status string

// The six statuses; their JSON names are the API's.
const (
	Queued    Status = "queued"
	Running   Status = "running"
	Succeeded Status = "succeeded"
	Failed    Status = "failed"
	Cancelled Status = "cancelled"
	Expired   Status = "expired"
)

// TerminalRank is the rank every terminal status shares.
const TerminalRank = 2

// Rank orders statuses within one attempt: queued 0, running 1, terminal
// TerminalRank; -1 for an unknown status. Terminal statuses share the top
// rank so that the first terminal status of an attempt wins. A record only
// moves to a higher rank, or to a later attempt.
func (s Status) Rank() int {
	switch s {
	case Queued:
		return 0
	case Running:
		return 1
	case Succeeded, Failed, Cancelled, Expired:
		return TerminalRank
	}
	return -1
}

// Terminal reports whether no further change can happen in this attempt.
func (s Status) Terminal() bool { return s.Rank() == TerminalRank }

// Valid reports whether s is one of the six statuses.
func (s Status) Valid() bool { return s.Rank() >= 0 }

// Statuses lists every status, in rank order.
func Statuses() []Status { return []Status{Queued, Running, Succeeded, Failed, Cancelled, Expired} }

// Proto is s as it travels in a JobEvent; STATUS_UNSPECIFIED for an
// unknown status.
func (s Status) Proto() inferqpb.Status {
	switch s {
	case Queued:
		return inferqpb.Status_STATUS_QUEUED
	case Running:
		return inferqpb.Status_STATUS_RUNNING
	case Succeeded:
		return inferqpb.Status_STATUS_SUCCEEDED
	case Failed:
		return inferqpb.Status_STATUS_FAILED
	case Cancelled:
		return inferqpb.Status_STATUS_CANCELLED
	case Expired:
		return inferqpb.Status_STATUS_EXPIRED
	}
	return inferqpb.Status_STATUS_UNSPECIFIED
}

// StatusOf is the status of an event's proto status; false for
// STATUS_UNSPECIFIED and values this build does not know.
func StatusOf(p inferqpb.Status) (Status, bool) {
	switch p {
	case inferqpb.Status_STATUS_QUEUED:
		return Queued, true
	case inferqpb.Status_STATUS_RUNNING:
		return Running, true
	case inferqpb.Status_STATUS_SUCCEEDED:
		return Succeeded, true
	case inferqpb.Status_STATUS_FAILED:
		return Failed, true
	case inferqpb.Status_STATUS_CANCELLED:
		return Cancelled, true
	case inferqpb.Status_STATUS_EXPIRED:
		return Expired, true
	}
	return "", false
}
