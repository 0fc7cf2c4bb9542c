package experiment

import (
	"io"
	"math"
	"strings"
	"testing"

	"mimlab/data"
	"mimlab/framework/spec"
	"mimlab/framework/sweep"
	"mimlab/nn"
)

// A bf16 trial end to end at tiny size: it trains on the go backend, its checkpoint holds float32 master
// weights, and on ort (which refuses to train it) it still loads for evaluation, in float32.
func TestBF16TrialTrainsAndEvaluatesAnywhere(t *testing.T) {
	sets := []string{"train.precision=bf16", "encoder.dim=16", "encoder.depth=1", "encoder.heads=2",
		"data.train_limit=64", "data.test_limit=32", "data.batch_size=16"}
	raw, err := spec.Load("../experiments/quickstart.toml", sets)
	if err != nil {
		t.Fatal(err)
	}
	trials, err := sweep.Expand(raw, Sections())
	if err != nil {
		t.Fatal(err)
	}
	runs := t.TempDir()
	prepare := func(backend string) (*Trial, string) {
		t.Helper()
		be, resolved, err := nn.NewBackendWith(backend, nn.BackendOptions{Threads: 1}, io.Discard)
		if err != nil {
			t.Fatal(err)
		}
		env := NewEnv(be, resolved, runs, io.Discard)
		env.AddSpec(trials[0].Hash, trials[0].Resolved)
		x, err := env.Prepare(trials[0].Hash)
		if err != nil {
			t.Fatal(err)
		}
		return x, resolved
	}
	x, _ := prepare("go")
	if x.Cfg.Train.Precision != "bf16" {
		t.Fatalf("train.precision = %q, want bf16", x.Cfg.Train.Precision)
	}
	tr, err := x.NewTrainer()
	if err != nil {
		t.Fatal(err)
	}
	defer tr.Finalize()
	l := data.NewLoader(x.Data, &x.Data.Train, data.LoaderConfig{BatchSize: 16, Seed: 1, Shuffle: true, DropLast: true}, 0)
	defer l.Close()
	var first, last float64
	for i := 0; i < 4; i++ {
		in, err := x.StepInputs(l.Next())
		if err != nil {
			t.Fatal(err)
		}
		loss, _, _, err := tr.TrainStep(1e-3, in...)
		nn.Free(in...)
		if err != nil {
			t.Fatal(err)
		}
		if math.IsNaN(loss) || math.IsInf(loss, 0) {
			t.Fatalf("step %d: loss %v", i, loss)
		}
		if i == 0 {
			first = loss
		}
		last = loss
	}
	t.Logf("bf16 CAE on go: loss %.4f -> %.4f in 4 steps", first, last)
	if err := x.SaveCheckpoint(tr); err != nil {
		t.Fatal(err)
	}
	arr, _, err := nn.LoadSafetensors(x.checkpointPath())
	if err != nil {
		t.Fatal(err)
	}
	for name, a := range arr {
		if strings.HasPrefix(name, "param/") && (a.F32 == nil || a.Size() == 0) {
			t.Fatalf("checkpoint %s is not float32", name)
		}
	}

	if !nn.ORTAvailable() {
		t.Skip("ONNX Runtime not found: the ort half (refuse to train, load to evaluate) needs it")
	}
	y, resolved := prepare("ort")
	if _, err := y.NewTrainer(); err == nil || !strings.Contains(err.Error(), `train.precision = "bf16": backend ort cannot run it`) {
		t.Fatalf("training the bf16 trial on %s: err %v, want the refusal", resolved, err)
	}
	set, params, step, err := y.LoadTrained()
	if err != nil {
		t.Fatalf("evaluating the bf16 trial's checkpoint on %s: %v", resolved, err)
	}
	defer nn.Free(params...)
	if step != 4 || len(params) != len(set.Params) {
		t.Fatalf("loaded step %d with %d of %d parameters, want step 4 and all", step, len(params), len(set.Params))
	}
}
