package jetstream

import "time"

// DeadLetter is the record kept in the dead-letter stream (JSON, so that
// operators can read it with any NATS client) for a job that failed for
// good: what it was, where its original is in the jobs stream (for replay),
// how often it was tried and why it failed.
type DeadLetter struct {
	Job        string    `json:"job"`
	Tenant     string    `json:"tenant"`
	Model      string    `json:"model"`
	JobsSeq    uint64    `json:"jobs_seq"`   // sequence of the job in INFERQ_JOBS
	Attempt    uint32    `json:"attempt"`    // 1, or more after replays
	Deliveries uint64    `json:"deliveries"` // how often its batch was delivered
	Batch      string    `json:"batch,omitempty"`
	Error      string    `json:"error"`
	Time       time.Time `json:"time"`
}
