package experiment

import (
	"fmt"
	"path/filepath"
	"strings"

	"mimlab/framework/npy"
	"mimlab/framework/runner"
	"mimlab/framework/store"
	"mimlab/nn"
)

// Export writes a trial's encoder weights (timm names) or its frozen features of a split (.npy, labels
// beside them) from the database and the runs folder alone.
type Export struct {
	Weights  string // .safetensors path, or ""
	Features string // "train" or "test", or ""
	Out      string // .npy path for Features
	// CheckpointSHA is the sha256 the database recorded for the trial's checkpoint ("" when none is): a
	// checkpoint on disk that does not match it is not exported.
	CheckpointSHA string
}

// ExportTrial runs an Export for trial tr, on backend be; it returns a line saying what it wrote.
func ExportTrial(env *Env, tr *store.Trial, x Export) (string, error) {
	res, err := ResolveStored(tr.Spec)
	if err != nil {
		return "", err
	}
	env.AddSpec(tr.Hash, res)
	t, err := env.Prepare(tr.Hash)
	if err != nil {
		return "", err
	}
	defer t.Close()
	t.FindDir(tr.LegacyHash)
	if x.CheckpointSHA != "" {
		// The file must be the one the database recorded: another one (damaged, or written by a worker
		// after it lost its lease) would export weights of a step the trial's record does not hold.
		got, err := runner.FileSHA(t.checkpointPath())
		if err != nil {
			return "", fmt.Errorf("trial %d: checkpoint: %w", tr.ID, err)
		}
		if got != x.CheckpointSHA {
			return "", fmt.Errorf("trial %d: checkpoint %s does not match the sha256 recorded for it (file %s, recorded %s): not exported (a damaged file, or one written after its worker lost the trial)", tr.ID, t.checkpointPath(), got[:12], x.CheckpointSHA[:min(12, len(x.CheckpointSHA))])
		}
	}
	set, params, step, err := t.LoadTrained()
	if err != nil {
		return "", err
	}
	defer nn.Free(params...)
	if x.Weights != "" {
		if err := ExportEncoder(t, set, params, x.Weights); err != nil {
			return "", err
		}
		return fmt.Sprintf("wrote %s (encoder of trial %d at step %d, timm names)", x.Weights, tr.ID, step), nil
	}
	split := &t.Data.Train
	if x.Features == "test" {
		split = &t.Data.Test
	}
	pooled, _, err := t.Extract(set, params, split, false)
	if err != nil {
		return "", err
	}
	feature := t.Cfg.Eval.Feature
	if feature == "both" {
		feature = "cls" // one file holds one pooling; set eval.feature to choose
	}
	f := pooled.Get(feature)
	if err := npy.WriteFloat32(x.Out, f.X, f.N, f.D); err != nil {
		return "", err
	}
	labels := make([]int64, f.N)
	for i, l := range f.Labels {
		labels[i] = int64(l)
	}
	lp := strings.TrimSuffix(x.Out, filepath.Ext(x.Out)) + "_labels.npy"
	if err := npy.WriteInt64(lp, labels, f.N); err != nil {
		return "", err
	}
	return fmt.Sprintf("wrote %s (%d x %d %s features, %s) and %s", x.Out, f.N, f.D, x.Features, feature, lp), nil
}
