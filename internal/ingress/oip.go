package ingress

import (
	"context"
	"encoding/json"
	"net/http"
	"strconv"

	"github.com/labstack/echo/v4"

	"github.com/inferq/inferq/internal/config"
	"github.com/inferq/inferq/internal/obs"
	"github.com/inferq/inferq/internal/results"
	"github.com/inferq/inferq/internal/version"
	"github.com/inferq/inferq/pkg/tensor"
)

// The synchronous Open Inference Protocol endpoints are backed by the same
// queue as the asynchronous API: they accept a job, then wait for its record.

// waitDone accepts the request as a job and waits until it ends or the
// synchronous timeout passes (504, with the job's address to poll).
func (i *Ingress) waitDone(c echo.Context) (*results.Record, outputWish, error) {
	acc, _, err := i.accept(c)
	if err != nil {
		return nil, outputWish{}, err
	}
	rec, err := i.waitAccepted(c, acc)
	return rec, acc.wish, err
}

// waitAccepted is waitDone's wait, once the job is accepted.
func (i *Ingress) waitAccepted(c echo.Context, acc *Accepted) (*results.Record, error) {
	ctx, cancel := context.WithTimeout(c.Request().Context(), i.opt.Config.Ingress.SyncTimeout.D())
	defer cancel()
	rec, err := i.wait(ctx, acc.ID, func(r *results.Record) bool { return r.Status.Terminal() })
	if err != nil {
		return nil, i.unavailable(acc.Model, "store", err)
	}
	c.Response().Header().Set(echo.HeaderLocation, acc.Links.Self)
	switch rec.Status {
	case results.Succeeded:
		return rec, nil
	case results.Failed, results.Cancelled:
		e := rec.Error
		if e == nil {
			e = &results.Error{Code: string(rec.Status), Message: "the job " + string(rec.Status)}
		}
		return nil, apiError(http.StatusInternalServerError, e.Code, e.Message)
	case results.Expired:
		return nil, apiError(http.StatusGatewayTimeout, "expired", "the job's timeout passed before it ran")
	}
	return nil, apiError(http.StatusGatewayTimeout, "timeout",
		"job "+strconv.Quote(acc.ID)+" is still "+string(rec.Status)+"; poll "+acc.Links.Self)
}

// infer handles POST /v2/models/{model}[/versions/{v}]/infer: the KServe v2
// inference request, answered with the inference response.
func (i *Ingress) infer(c echo.Context) error {
	rec, wish, err := i.waitDone(c)
	if err != nil {
		return err
	}
	return i.answerResult(c, http.StatusOK, rec, false, wish.withAccept(c.Request().Header))
}

// generateResponse is the answer of the generate extension.
type generateResponse struct {
	ID           string `json:"id"`
	ModelName    string `json:"model_name"`
	ModelVersion string `json:"model_version"`
	TextOutput   string `json:"text_output"`
}

// generate handles POST /v2/models/{model}[/versions/{v}]/generate
// ({text_input, parameters}).
func (i *Ingress) generate(c echo.Context) error {
	rec, _, err := i.waitDone(c)
	if err != nil {
		return err
	}
	if rec, err = i.resolved(c.Request().Context(), rec); err != nil {
		return err
	}
	var res struct {
		Outputs []struct {
			Name string          `json:"name"`
			Data json.RawMessage `json:"data"`
		} `json:"outputs"`
	}
	_ = json.Unmarshal(rec.Result, &res)
	out := generateResponse{ID: rec.ID, ModelName: rec.Model, ModelVersion: rec.Version}
	for _, o := range res.Outputs {
		var texts []string
		if json.Unmarshal(o.Data, &texts) == nil && len(texts) > 0 {
			out.TextOutput = texts[0]
			break
		}
	}
	return c.JSON(http.StatusOK, out)
}

// generateStream handles POST /v2/models/{model}[/versions/{v}]/generate_stream: one SSE
// `data:` event per token ({model_name, model_version, text_output}), then
// the stream ends; a failure is an event with `error`.
func (i *Ingress) generateStream(c echo.Context) error {
	acc, _, err := i.accept(c)
	if err != nil {
		return err
	}
	ctx, cancel := context.WithTimeout(c.Request().Context(), i.opt.Config.Ingress.SyncTimeout.D())
	defer cancel()
	rec, err := i.record(ctx, acc.ID)
	if err != nil {
		return i.unavailable(acc.Model, "store", err)
	}
	subject := i.opt.Topology.TokenSubject(rec.Tenant, rec.ID)
	toks, err := i.watchTokens(ctx, rec, subject, 0)
	if err != nil {
		return i.unavailable(acc.Model, "tokens", err)
	}
	recs := i.watchRecord(ctx, rec)
	w := c.Response()
	w.Header().Set(echo.HeaderContentType, "text/event-stream")
	w.Header().Set("Cache-Control", "no-cache")
	w.Header().Set(echo.HeaderLocation, acc.Links.Self)
	w.WriteHeader(http.StatusOK)
	w.Flush()
	cur := cursor{rank: -1}
	send := func(event string, next cursor, data any) error {
		cur = next
		if event != "token" {
			return nil // only tokens are events here
		}
		d := data.(map[string]any)
		return writeData(w, generateResponse{ID: rec.ID, ModelName: rec.Model, ModelVersion: rec.Version, TextOutput: d["text"].(string)})
	}
	f := &follower{i: i, rec: rec, recs: recs, toks: toks, subject: subject}
	for {
		if f.rec.Status.Terminal() {
			f.drain(ctx, &cur, send)
			if f.rec.Status != results.Succeeded {
				e := f.rec.Error
				if e == nil {
					e = &results.Error{Code: string(f.rec.Status), Message: "the job " + string(f.rec.Status)}
				}
				_ = writeData(w, map[string]any{"error": e.Message, "code": e.Code})
			}
			return nil
		}
		if f.next(ctx, &cur, send, nil) == stepEnd {
			if ctx.Err() == context.DeadlineExceeded {
				_ = writeData(w, map[string]any{"error": "timed out; poll " + acc.Links.Self, "code": "timeout"})
			}
			return nil
		}
	}
}

// writeData writes one unnamed SSE event, as Triton's generate_stream does.
func writeData(w *echo.Response, v any) error {
	b, err := json.Marshal(v)
	if err != nil {
		return err
	}
	obs.ExtendWrite(w, sseWriteTimeout)
	if _, err := w.Write(append(append([]byte("data: "), b...), '\n', '\n')); err != nil {
		return err
	}
	w.Flush()
	return nil
}

// serverMetadata handles GET /v2 (OIP server metadata).
func (i *Ingress) serverMetadata(c echo.Context) error {
	return c.JSON(http.StatusOK, map[string]any{"name": "inferq", "version": version.String(), "extensions": oipExtensions})
}

// tritonConfig is a model's configuration in the JSON form of Triton's
// ModelConfig, the subset that clients such as perf_analyzer read.
type tritonConfig struct {
	Name            string         `json:"name"`
	Platform        string         `json:"platform"`
	Backend         string         `json:"backend"`
	MaxBatchSize    int            `json:"max_batch_size"`
	Input           []tritonTensor `json:"input"`
	Output          []tritonTensor `json:"output"`
	DynamicBatching struct {
		PreferredBatchSize        []int `json:"preferred_batch_size"`
		MaxQueueDelayMicroseconds int64 `json:"max_queue_delay_microseconds"`
	} `json:"dynamic_batching"`
	// Decoupled models answer with any number of responses: ours that
	// generate stream tokens.
	ModelTransactionPolicy struct {
		Decoupled bool `json:"decoupled"`
	} `json:"model_transaction_policy"`
}

type tritonTensor struct {
	Name     string  `json:"name"`
	DataType string  `json:"data_type,omitempty"` // absent: the model takes any datatype
	Dims     []int64 `json:"dims"`
}

func tritonTensors(ts []config.Tensor) []tritonTensor {
	out := make([]tritonTensor, len(ts))
	for k, t := range ts {
		out[k] = tritonTensor{Name: t.Name, Dims: t.Dims}
		switch t.Datatype {
		case "":
		case string(tensor.Bytes):
			out[k].DataType = "TYPE_STRING" // Triton's name for BYTES
		default:
			out[k].DataType = "TYPE_" + t.Datatype
		}
		if out[k].Dims == nil {
			out[k].Dims = []int64{}
		}
	}
	return out
}

// modelConfig handles GET /v2/models/{model}[/versions/{v}]/config, Triton's
// model configuration extension. Dims exclude the batch dimension, as in
// Triton when max_batch_size is above 0.
func (i *Ingress) modelConfig(c echo.Context) error {
	m, err := i.model(c)
	if err != nil {
		return err
	}
	cfg := tritonConfig{Name: modelOf(m.Name), Platform: platform(m), Backend: "inferq", MaxBatchSize: m.Batching.MaxBatchSize,
		Input: tritonTensors(m.Inputs), Output: tritonTensors(m.Outputs)}
	cfg.DynamicBatching.PreferredBatchSize = m.Batching.PreferredBatchSizes
	if cfg.DynamicBatching.PreferredBatchSize == nil {
		cfg.DynamicBatching.PreferredBatchSize = []int{}
	}
	cfg.DynamicBatching.MaxQueueDelayMicroseconds = m.Batching.MaxQueueDelay.D().Microseconds()
	cfg.ModelTransactionPolicy.Decoupled = m.Kind == config.KindGenerate
	return c.JSON(http.StatusOK, cfg)
}
