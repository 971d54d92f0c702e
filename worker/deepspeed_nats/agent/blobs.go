package agent

import (
	"context"
	"errors"
	"fmt"

	"github.com/inferq/inferq/internal/blob"
	"github.com/inferq/inferq/schemas/inferqpb"
)

// Error codes of jobs whose input in the blobs bucket cannot be used: no
// retry helps, so they fail at the first delivery.
const (
	CodeBlobMissing = "blob_missing" // expired with the results retention, or never stored
	CodeBlobCorrupt = "blob_corrupt" // size or sha256 differs from the reference
)

// resolveInputs replaces the batch's input references with their checked
// bytes. A missing or damaged blob is a PermanentError with its code; any
// other error is transient (the batch is retried).
func (a *Agent) resolveInputs(ctx context.Context, b *inferqpb.Batch) error {
	for _, ts := range [][]*inferqpb.Tensor{b.Inputs, b.Masks} {
		for _, t := range ts {
			err := a.opt.Blobs.Resolve(ctx, t)
			switch {
			case errors.Is(err, blob.ErrCorrupt):
				return &PermanentError{Err: fmt.Errorf("input: %w", err), Code: CodeBlobCorrupt}
			case errors.Is(err, blob.ErrNotFound):
				return &PermanentError{Err: fmt.Errorf("input: %w", err), Code: CodeBlobMissing}
			case err != nil:
				return fmt.Errorf("input: %w", err)
			}
		}
	}
	return nil
}

// offloadOutputs stores a job's outputs over the threshold in the blobs
// bucket, under a name of the job's attempt, leaving references in outs.
func (a *Agent) offloadOutputs(ctx context.Context, j *inferqpb.BatchJob, outs []*inferqpb.Tensor) error {
	for _, o := range outs {
		if err := a.opt.Blobs.Offload(ctx, o, blob.OutputName(j.Id, j.Attempt, o.Name), a.opt.BlobThreshold); err != nil {
			return err
		}
	}
	return nil
}
