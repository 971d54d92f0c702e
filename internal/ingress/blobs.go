package ingress

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"time"

	"github.com/inferq/inferq/internal/blob"
	"github.com/inferq/inferq/internal/results"
	"github.com/inferq/inferq/internal/wire"
	"github.com/inferq/inferq/pkg/tensor"
	"github.com/inferq/inferq/schemas/inferqpb"
)

// threshold is blobs.threshold_bytes, or its default for a config built
// without Finish.
func (i *Ingress) threshold() int64 {
	if t := i.opt.Config.Blobs.ThresholdBytes; t > 0 {
		return t
	}
	return 256 << 10
}

// offloadInputs stores the job's inputs larger than blobs.threshold_bytes
// in the blobs bucket, leaving references in the job, so that its message
// fits NATS's max payload. It returns the names stored, for dropBlobs when
// the job is then not accepted.
func (i *Ingress) offloadInputs(ctx context.Context, job *inferqpb.Job) ([]string, error) {
	var names []string
	for n, t := range job.Inputs {
		name := blob.InputName(job.Id, n)
		if err := i.opt.Blobs.Offload(ctx, t, name, i.threshold()); err != nil {
			i.dropBlobs(names)
			return nil, err
		}
		if t.Ref != nil {
			names = append(names, name)
		}
	}
	return names, nil
}

// dropBlobs deletes the blobs of a job that was not accepted (best effort:
// the bucket's TTL removes whatever is left).
func (i *Ingress) dropBlobs(names []string) {
	if len(names) == 0 {
		return
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	for _, name := range names {
		if err := i.opt.Blobs.Delete(ctx, name); err != nil {
			i.opt.Log.Warn("blob of a refused job not deleted; it expires with the bucket's TTL", "blob", name, "err", err)
		}
	}
}

// resolveResult puts back the data of a stored result's outputs that are
// kept by reference in the blobs bucket (parameter inferq_blob, see
// wire.RefJSON), so that a client sees an ordinary OIP response. A result
// without references is returned as it is, unparsed. Every answer that
// shows a result goes through here: GET /v1/jobs/{id}, a `Prefer: wait`
// submission, the synchronous /v2 routes and the SSE result event.
func (i *Ingress) resolveResult(ctx context.Context, raw json.RawMessage) (json.RawMessage, error) {
	if !bytes.Contains(raw, []byte(`"`+wire.BlobParam+`"`)) {
		return raw, nil
	}
	var res struct {
		ModelName    string            `json:"model_name"`
		ModelVersion string            `json:"model_version,omitempty"`
		ID           string            `json:"id"`
		Parameters   json.RawMessage   `json:"parameters,omitempty"`
		Outputs      []json.RawMessage `json:"outputs"`
	}
	if err := json.Unmarshal(raw, &res); err != nil {
		return nil, fmt.Errorf("stored result: %w", err)
	}
	for k, o := range res.Outputs {
		var ref struct {
			wire.RefJSON
			Data json.RawMessage `json:"data"`
		}
		if err := json.Unmarshal(o, &ref); err != nil {
			return nil, fmt.Errorf("stored result output %d: %w", k, err)
		}
		br, ok := ref.Parameters[wire.BlobParam]
		if !ok || len(ref.Data) > 0 {
			continue
		}
		data, err := i.opt.Blobs.Get(ctx, br.Proto())
		if err != nil {
			return nil, fmt.Errorf("output %q: %w", ref.Name, err)
		}
		t := &tensor.Tensor{Name: ref.Name, Datatype: tensor.DataType(ref.Datatype), Shape: ref.Shape, Data: data}
		if err := t.Validate(); err != nil {
			return nil, fmt.Errorf("output %q: %w", ref.Name, err)
		}
		out := make([]byte, 0, len(data)*3+256)
		out = fmt.Appendf(out, `{"name":%s,"shape":%s,"datatype":%s,"data":`, mustJSON(ref.Name), mustJSON(ref.Shape), mustJSON(ref.Datatype))
		if out, err = tensor.AppendJSONData(out, t); err != nil {
			return nil, fmt.Errorf("output %q: %w", ref.Name, err)
		}
		res.Outputs[k] = append(out, '}')
	}
	// Assembled by hand: json.Marshal would scan every output again.
	n := 128
	for _, o := range res.Outputs {
		n += len(o) + 1
	}
	b := make([]byte, 0, n)
	b = fmt.Appendf(b, `{"model_name":%s,`, mustJSON(res.ModelName))
	if res.ModelVersion != "" {
		b = fmt.Appendf(b, `"model_version":%s,`, mustJSON(res.ModelVersion))
	}
	b = fmt.Appendf(b, `"id":%s,`, mustJSON(res.ID))
	if len(res.Parameters) > 0 {
		b = append(append(append(b, `"parameters":`...), res.Parameters...), ',')
	}
	b = append(b, `"outputs":[`...)
	for k, o := range res.Outputs {
		if k > 0 {
			b = append(b, ',')
		}
		b = append(b, o...)
	}
	return append(b, "]}"...), nil
}

// resolved is rec with its result resolved (resolveResult); rec itself
// when there is nothing to resolve. An error is the answer to give.
func (i *Ingress) resolved(ctx context.Context, rec *results.Record) (*results.Record, error) {
	if len(rec.Result) == 0 {
		return rec, nil
	}
	res, err := i.resolveResult(ctx, rec.Result)
	switch {
	case err == nil:
		if len(res) == len(rec.Result) && bytes.Equal(res, rec.Result) {
			return rec, nil
		}
		return rec.WithResult(res), nil
	case blob.Permanent(err):
		i.opt.Log.Error("job result unreadable", "job", rec.ID, "err", err)
		return nil, apiError(http.StatusInternalServerError, "result_unreadable",
			fmt.Sprintf("job %s: an output kept in the blob store cannot be read: %v", rec.ID, err))
	default:
		return nil, i.unavailable("", "store", err)
	}
}
