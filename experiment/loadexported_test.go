package experiment_test

import (
	"context"
	"io"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"mimlab/experiment"
	"mimlab/framework/runner"
	"mimlab/framework/store"
	"mimlab/nn"
)

// A done trial loaded from its exported encoder alone has the encoder its checkpoint holds, and its last step.
func TestLoadExportedGivesTheTrainedEncoder(t *testing.T) {
	dir := t.TempDir()
	ps, err := experiment.Plan([]string{"../experiments/quickstart.toml"}, []string{"encoder.dim=16", "encoder.depth=1", "encoder.heads=2",
		"data.train_limit=200", "data.test_limit=50", "train.steps=3", "train.warmup_steps=1", "eval.protocols=[]", "train.backend=go"})
	if err != nil {
		t.Fatal(err)
	}
	st, err := store.Open(filepath.Join(dir, "r.db"))
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	runs := filepath.Join(dir, "runs")
	if res, err := experiment.RunSpecs(context.Background(), st, ps, experiment.RunOptions{Runs: runs, Log: io.Discard,
		Runner: runner.Options{Workers: 1, Log: io.Discard}}); err != nil || res.Done != 2 {
		t.Fatalf("%+v, %v", res, err)
	}
	be, name, err := nn.NewBackend("go", io.Discard)
	if err != nil {
		t.Fatal(err)
	}
	env := experiment.NewEnv(be, name, runs, io.Discard)
	tr := ps[0].Trials[0]
	env.AddSpec(tr.Hash, tr.Resolved)
	x, err := env.Prepare(tr.Hash)
	if err != nil {
		t.Fatal(err)
	}
	set, full, step, err := x.LoadTrained()
	if err != nil {
		t.Fatal(err)
	}
	defer nn.Free(full...)
	if err := os.Remove(filepath.Join(runs, tr.Hash, "checkpoint.safetensors")); err != nil {
		t.Fatal(err)
	}
	set2, exp, step2, err := x.LoadExported()
	if err != nil {
		t.Fatal(err)
	}
	defer nn.Free(exp...)
	if step2 != step || len(set2.Params) != len(set.Params) {
		t.Fatalf("step %d, %d parameters; the checkpoint's %d, %d", step2, len(set2.Params), step, len(set.Params))
	}
	n := 0
	for i, p := range set.Params {
		if !strings.HasPrefix(p.Name, "encoder.") {
			continue
		}
		n++
		if !slices.Equal(nn.Float32s(full[i]), nn.Float32s(exp[i])) {
			t.Fatalf("%s differs between the checkpoint and the export", p.Name)
		}
	}
	if n == 0 {
		t.Fatal("no encoder parameters compared")
	}
}
