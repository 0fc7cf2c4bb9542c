package experiment

import (
	"bytes"
	"io"
	"strconv"
	"strings"
	"testing"

	"mimlab/framework/spec"
	"mimlab/framework/sweep"
	"mimlab/nn"
)

// TestExtractRunsEvalBatches: feature extraction reads the split in batches of eval.batch, the size its
// graph is compiled for, whatever data.batch_size (the training batch) is. It read batches of
// data.batch_size padded to eval.batch, which ran the graph 4x as often as needed at the quickstart's sizes.
func TestExtractRunsEvalBatches(t *testing.T) {
	be, resolved, err := nn.NewBackendWith("ort", nn.BackendOptions{Threads: 1}, io.Discard)
	if err != nil {
		t.Fatal(err)
	}
	for _, c := range []struct {
		train, eval, n, wantBatches int
	}{
		{train: 16, eval: 64, n: 200, wantBatches: 4},
		{train: 64, eval: 32, n: 200, wantBatches: 7},
	} {
		sets := []string{"encoder.dim=16", "encoder.depth=1", "encoder.heads=2", "data.train_limit=200", "data.test_limit=100",
			"data.batch_size=" + strconv.Itoa(c.train), "eval.batch=" + strconv.Itoa(c.eval)}
		raw, err := spec.Load("../experiments/quickstart.toml", sets)
		if err != nil {
			t.Fatal(err)
		}
		trials, err := sweep.Expand(raw, Sections())
		if err != nil {
			t.Fatal(err)
		}
		var log bytes.Buffer
		env := NewEnv(be, resolved, t.TempDir(), &log)
		env.AddSpec(trials[0].Hash, trials[0].Resolved)
		x, err := env.Prepare(trials[0].Hash)
		if err != nil {
			t.Fatal(err)
		}
		trn, err := x.NewTrainer()
		if err != nil {
			t.Fatal(err)
		}
		f, _, err := x.Extract(trn.Set, trn.Params, &x.Data.Train, false)
		trn.Finalize()
		if err != nil {
			t.Fatal(err)
		}
		if f.Cls.N != c.n || len(f.Cls.X) != c.n*16 {
			t.Errorf("batch %d/%d: %d features of %d values, want %d of 16", c.train, c.eval, f.Cls.N, len(f.Cls.X), c.n)
		}
		want := "features: 200 images in " + strconv.Itoa(c.wantBatches) + " batches of " + strconv.Itoa(c.eval)
		if !strings.Contains(log.String(), want) {
			t.Errorf("data.batch_size %d, eval.batch %d: log %q, want %q", c.train, c.eval, log.String(), want)
		}
	}
}
