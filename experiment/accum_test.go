package experiment_test

import (
	"context"
	"io"
	"math"
	"path/filepath"
	"strings"
	"testing"

	"mimlab/experiment"
	"mimlab/framework/runner"
	"mimlab/framework/store"
	"mimlab/nn"
)

// train.accum_steps end to end: the quickstart's CAE and BEiT with data.batch_size = 4 and accum_steps = 4
// end with the parameters of data.batch_size = 16 after 3 steps, to float tolerance: the loader reads the
// effective batch, masks and drop path are drawn for it and cut into the micro-batches (README, Specs).
func TestAccumStepsGiveTheLargeBatch(t *testing.T) {
	common := []string{"encoder.dim=16", "encoder.depth=1", "encoder.heads=2",
		"data.train_limit=200", "data.test_limit=50", "train.steps=3", "train.warmup_steps=1", "eval.protocols=[]", "train.backend=go"}
	run := func(sets ...string) map[string][]float32 {
		t.Helper()
		dir := t.TempDir()
		ps, err := experiment.Plan([]string{"../experiments/quickstart.toml"}, append(append([]string(nil), common...), sets...))
		if err != nil {
			t.Fatal(err)
		}
		st, err := store.Open(filepath.Join(dir, "r.db"))
		if err != nil {
			t.Fatal(err)
		}
		defer st.Close()
		runs := filepath.Join(dir, "runs")
		res, err := experiment.RunSpecs(context.Background(), st, ps, experiment.RunOptions{Runs: runs, Log: io.Discard,
			Runner: runner.Options{Workers: 1, Log: io.Discard}})
		if err != nil || res.Done != 2 {
			t.Fatalf("%+v, %v", res, err)
		}
		be, name, err := nn.NewBackend("go", io.Discard)
		if err != nil {
			t.Fatal(err)
		}
		env := experiment.NewEnv(be, name, runs, io.Discard)
		out := map[string][]float32{}
		for i, tr := range ps[0].Trials {
			env.AddSpec(tr.Hash, tr.Resolved)
			x, err := env.Prepare(tr.Hash)
			if err != nil {
				t.Fatal(err)
			}
			set, params, step, err := x.LoadTrained()
			if err != nil || step != 3 {
				t.Fatalf("trial %d: step %d, %v", i, step, err)
			}
			for j, p := range set.Params {
				out[string(rune('a'+i))+p.Name] = nn.Float32s(params[j])
			}
			nn.Free(params...)
		}
		return out
	}
	whole := run("data.batch_size=16")
	accum := run("data.batch_size=4", "train.accum_steps=4")
	moved := false
	for name, a := range whole {
		b := accum[name]
		if len(b) != len(a) {
			t.Fatalf("%s: %d values vs %d", name, len(a), len(b))
		}
		for i := range a {
			if d := math.Abs(float64(a[i] - b[i])); d > 2e-5 {
				t.Fatalf("%s[%d]: %v at batch 16, %v at 4 x 4 accumulated", name, i, a[i], b[i])
			}
		}
		moved = moved || len(a) > 0
	}
	if !moved {
		t.Fatal("no parameters compared")
	}
}

// What accumulation cannot do is refused at plan time: an effective batch larger than the known training
// set, and a method whose loss couples a batch's samples (MoCo v3).
func TestAccumStepsPlanRefusals(t *testing.T) {
	for _, c := range []struct {
		file string
		sets []string
		want string
	}{
		{"../experiments/quickstart.toml", []string{"data.name=synthetic", "data.num_train=32", "data.num_test=16", "data.classes=4", "data.batch_size=16", "train.accum_steps=4"},
			"data.batch_size = 16 x train.accum_steps = 4: an effective batch of 64, larger than the 32 training images"},
		{"../experiments/mocov3.toml", []string{"train.accum_steps=2"}, `method.name = "mocov3" cannot accumulate gradients`},
	} {
		_, err := experiment.Plan([]string{c.file}, c.sets)
		if err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("%s %v: %v, want %q", c.file, c.sets, err, c.want)
		}
	}
}
