package tsne

import (
	"context"
	"errors"
	"math/rand/v2"
	"testing"
	"time"
)

// A t-SNE of many iterations stops within an iteration of its context's cancellation (report --watch's
// Ctrl-C), with an error that wraps the cancellation.
func TestEmbedStopsWhenCancelled(t *testing.T) {
	const n, d = 500, 8
	r := rand.New(rand.NewPCG(1, 2))
	x := make([]float64, n*d)
	for i := range x {
		x[i] = r.NormFloat64()
	}
	c := Default()
	c.Iterations = 10_000_000 // hours, if it did not stop
	ctx, cancel := context.WithTimeout(context.Background(), 300*time.Millisecond)
	defer cancel()
	start := time.Now()
	_, err := EmbedCtx(ctx, x, n, d, c)
	if !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("EmbedCtx = %v, want the context's error", err)
	}
	if took := time.Since(start); took > 5*time.Second {
		t.Errorf("stopped %s after its context ended", took-300*time.Millisecond)
	}
}
