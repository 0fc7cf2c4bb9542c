package report

import (
	"fmt"
	"io"
	"math"
	"os"
	"path/filepath"
	"strings"

	"github.com/gomlx/gomlx/core/tensors"
	"mimlab/analysis/attention"
	"mimlab/experiment"
	"mimlab/framework/store"
	"mimlab/nn"
)

// attnStatImages is how many test images (the first ones) each trial's attention concentration is read on.
const attnStatImages = 64

// trained loads a stored trial's trained model: the prepared trial, its parameter set and parameters. The
// caller closes the trial and frees the parameters. encoderOnly says the caller reads the encoder alone (the
// attention concentration): a done trial whose checkpoint is gone is then loaded from its exported encoder.
func trained(env *experiment.Env, ti trialInfo, encoderOnly bool) (*experiment.Trial, *nn.ParamSet, []*tensors.Tensor, int, error) {
	if !store.ValidHash(ti.Hash) {
		return nil, nil, nil, 0, fmt.Errorf("its hash %q is not 16 hex digits", ti.Hash)
	}
	res, err := experiment.ResolveStored(ti.Spec)
	if err != nil {
		return nil, nil, nil, 0, err
	}
	env.AddSpec(ti.Hash, res)
	t, err := env.Prepare(ti.Hash)
	if err != nil {
		return nil, nil, nil, 0, err
	}
	t.FindDir(ti.LegacyHash)
	load := t.LoadTrained
	if encoderOnly && ti.State == store.Done {
		if _, err := os.Stat(filepath.Join(t.Dir, "checkpoint.safetensors")); err != nil {
			// a committed results folder may keep the exported encoders only: enough for what reads the encoder
			load = t.LoadExported
		}
	}
	set, params, step, err := load()
	if err != nil {
		t.Close()
		return nil, nil, nil, 0, err
	}
	return t, set, params, step, nil
}

// trialConcentration is the concentration of the last encoder layer's cls attention (averaged over heads)
// on the first attnStatImages test images, as the model sees them.
func trialConcentration(t *experiment.Trial, set *nn.ParamSet, params []*tensors.Tensor) (attention.ConcentrationSummary, int, error) {
	v := t.Model.ViT
	n := min(attnStatImages, t.Data.Test.N)
	imgs := loaderImages(t, n)
	in := tensors.FromFlatDataAndDimensions(imgs, n, v.Channels, v.ImageSize, v.ImageSize)
	defer nn.Free(in)
	w, dims, err := attention.Weights(t.Env().Backend, t.Model, set, params, in, v.Depth-1)
	if err != nil {
		return attention.ConcentrationSummary{}, 0, err
	}
	s, err := attention.Summarize(attention.ClsMaps(w, dims), v.Grid())
	return s, v.Grid(), err
}

// concentrationText explains the concentration table.
const concentrationText = "Fig. 6 in numbers: the last encoder layer's cls-to-patch attention, averaged over heads and renormalised over the patches, " +
	"on the first %d test images of every seed's trial. Central mass: the share of the attention on the central patches " +
	"(the middle g/2 x g/2 block of the g x g grid; rows and columns 2..4, 9 of 49 patches, on a 7x7 grid). " +
	"Entropy: the map's entropy over log N (1 = uniform, 0 = one patch). Each value: the mean over seeds of the per-seed mean over images " +
	"± the standard deviation over seeds (n = seeds); the image spread is the mean over seeds of the standard deviation over images. " +
	"The uniform row is a map with equal weight on every patch."

// concentrationTable is the concentration per configuration over its seeds (trials that cannot be loaded
// are skipped and reported through skip), with a uniform-map reference row per grid.
func concentrationTable(env *experiment.Env, configs []string, by map[string][]trialInfo, skip func(string)) (table, error) {
	tab := table{head: []string{"configuration", "central mass", "image spread", "entropy / log N", "image spread"}}
	grids := map[int]bool{}
	var order []int
	for _, c := range configs {
		var cm, cs, hm, hs []float64
		for _, ti := range by[c] {
			t, set, params, _, err := trained(env, ti, true)
			if err != nil {
				skip(fmt.Sprintf("skipping the attention concentration of trial %d: %v", ti.ID, err))
				continue
			}
			s, g, err := trialConcentration(t, set, params)
			nn.Free(params...)
			t.Close()
			if err != nil {
				return table{}, fmt.Errorf("attention concentration of trial %d: %w", ti.ID, err)
			}
			if !grids[g] {
				grids[g] = true
				order = append(order, g)
			}
			cm, cs = append(cm, s.Central.Mean), append(cs, s.Central.Std)
			hm, hs = append(hm, s.Entropy.Mean), append(hs, s.Entropy.Std)
		}
		if len(cm) == 0 {
			continue
		}
		tab.rows = append(tab.rows, []string{c, summarize(cm).String(), fmt.Sprintf("%.4f", mean(cs)), summarize(hm).String(), fmt.Sprintf("%.4f", mean(hs))})
	}
	for _, g := range order {
		k := len(attention.CentralPatches(g))
		tab.rows = append(tab.rows, []string{fmt.Sprintf("reference: uniform map, %dx%d grid", g, g), fmt.Sprintf("%.4f", float64(k)/float64(g*g)), "0", "1.0000", "0"})
	}
	return tab, nil
}

func mean(v []float64) float64 {
	if len(v) == 0 {
		return math.NaN()
	}
	s := 0.0
	for _, x := range v {
		s += x
	}
	return s / float64(len(v))
}

// Models is what the attention blocks of a results document need to compute from the trials' checkpoints.
type Models struct {
	Backend string // as --backend
	Runs    string // the trials' checkpoints
	Log     io.Writer
	env     *experiment.Env
}

func (m *Models) envFor() (*experiment.Env, error) {
	if m.env != nil {
		return m.env, nil
	}
	log := m.Log
	if log == nil {
		log = io.Discard
	}
	be, name, err := nn.NewBackend(m.Backend, log)
	if err != nil {
		return nil, err
	}
	m.env = experiment.NewEnv(be, name, m.Runs, log)
	return m.env, nil
}

// AttentionTables renders a sweep's attention concentration table (and its key table when names are
// shortened) as Markdown, from the trials' checkpoints under models.Runs.
func AttentionTables(st *store.Store, sweep string, models *Models) (string, error) {
	if models == nil {
		return "", fmt.Errorf("attention tables are computed from the trials' checkpoints: give --runs (and --backend)")
	}
	env, err := models.envFor()
	if err != nil {
		return "", err
	}
	_, configs, by, err := load(st, sweep)
	if err != nil {
		return "", err
	}
	var skipped []string
	tab, err := concentrationTable(env, configs, by, func(s string) { skipped = append(skipped, s) })
	if err != nil {
		return "", err
	}
	if len(skipped) > 0 {
		return "", fmt.Errorf("%s", strings.Join(skipped, "; "))
	}
	var b strings.Builder
	tab.markdown(&b)
	if short := keyTable(configs, by); shortened(short) {
		short.markdown(&b)
	}
	return b.String() + "\n", nil
}
