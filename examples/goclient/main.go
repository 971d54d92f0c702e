// Command goclient shows pkg/client at work against a running inferq
// (`inferq dev`): it submits a generate job to the `repeat` test model and
// prints its tokens as they stream, then sends a tensor through `identity`
// and prints what came back.
//
//	go run ./examples/goclient            # INFERQ_URL defaults to http://127.0.0.1:8080
package main

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"math"
	"os"
	"time"

	"github.com/inferq/inferq/pkg/client"
	"github.com/inferq/inferq/pkg/tensor"
)

func main() {
	if err := run(); err != nil {
		slog.Error("goclient example failed", "err", err)
		os.Exit(1)
	}
}

func run() error {
	url := os.Getenv("INFERQ_URL")
	if url == "" {
		url = "http://127.0.0.1:8080"
	}
	c, err := client.New(url,
		client.WithToken(os.Getenv("INFERQ_TOKEN")),
		client.WithRetry(client.RetryPolicy{Attempts: 5})) // waits out 429/503 with their Retry-After
	if err != nil {
		return err
	}
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()

	// A generate job, its tokens streamed as they are made.
	sub, err := c.Submit(ctx, "repeat", client.Generate{Text: "hello ", Parameters: map[string]any{"max_tokens": 12}},
		client.WithIdempotencyKey(fmt.Sprintf("example-%d", time.Now().UnixNano())))
	if errors.Is(err, client.ErrQueueFull) {
		return fmt.Errorf("the broker is busy, try later: %w", err)
	}
	if err != nil {
		return err
	}
	stream, err := c.Stream(ctx, sub.ID)
	if err != nil {
		return err
	}
	defer stream.Close()
	for {
		ev, err := stream.Next()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			return err
		}
		switch ev.Type {
		case "token":
			fmt.Print(ev.Token.Text)
		case "result":
			fmt.Printf("\njob %s %s\n", ev.Job.ID, ev.Job.Status)
		case "error":
			return fmt.Errorf("job %s %s: %v", sub.ID, ev.Status, ev.Error)
		}
	}

	// A tensor job, answered in one round trip with Prefer: wait.
	in := &tensor.Tensor{Name: "INPUT0", Datatype: tensor.FP32, Shape: []int64{1, 3}}
	for _, f := range []float32{1.5, -2, 3.25} {
		in.Data = binary.LittleEndian.AppendUint32(in.Data, math.Float32bits(f))
	}
	sub, err = c.Submit(ctx, "identity", client.Infer{Inputs: []*tensor.Tensor{in}}, client.WithPreferWait(30*time.Second))
	if err != nil {
		return err
	}
	job := sub.Job
	if job == nil { // still running when the broker's wait ended
		if job, err = c.Wait(ctx, sub.ID); err != nil {
			return err
		}
	}
	if job.Status != client.Succeeded {
		return fmt.Errorf("job %s %s: %v", job.ID, job.Status, job.Error)
	}
	out := job.Result.Output("OUTPUT0")
	if out == nil {
		return fmt.Errorf("job %s: no OUTPUT0", job.ID)
	}
	j, err := tensor.ToJSON(out)
	if err != nil {
		return err
	}
	fmt.Printf("identity %s %v %s\n", j.Datatype, j.Shape, j.Data)
	return nil
}
