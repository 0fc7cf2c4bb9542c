package experiment

import (
	"context"
	"encoding/json"
	"fmt"
	"path/filepath"
	"slices"
	"strings"
	"time"

	"github.com/gomlx/compute/dtypes"
	"github.com/gomlx/compute/shapes"
	. "github.com/gomlx/gomlx/core/graph"
	"github.com/gomlx/gomlx/core/tensors"
	"mimlab/components/method"
	"mimlab/data"
	"mimlab/eval"
	"mimlab/framework/runner"
	"mimlab/framework/store"
	"mimlab/nn"
)

// Pooled are a split's features pooled both ways: the cls token after the final LayerNorm, and the mean of
// the patch tokens.
type Pooled struct{ Cls, Mean eval.Features }

// Get returns the features of one pooling ("cls" or "mean").
func (p Pooled) Get(feature string) eval.Features {
	if feature == "mean" {
		return p.Mean
	}
	return p.Cls
}

// Extract runs the frozen encoder over a split: it returns the pooled features (cls after the final
// LayerNorm, and the mean of patch tokens) and, when tokens is true, every output token. Batches are padded
// to one size so a single compiled graph serves the split.
func (t *Trial) Extract(set *nn.ParamSet, params []*tensors.Tensor, split *data.Split, tokens bool) (Pooled, eval.Tokens, error) {
	return t.ExtractCtx(context.Background(), set, params, split, tokens)
}

// ExtractCtx is Extract that stops within a batch of ctx's cancellation (an error wrapping ctx.Err()).
func (t *Trial) ExtractCtx(ctx context.Context, set *nn.ParamSet, params []*tensors.Tensor, split *data.Split, tokens bool) (Pooled, eval.Tokens, error) {
	v := t.Model.ViT
	// A split smaller than eval.batch is one batch of its own size, not padded up to it (64 test images at
	// ViT-S/16 224 px took as long as 256: issue 29).
	bs := min(t.Cfg.Eval.Batch, max(split.N, 1))
	shp := []shapes.Shape{shapes.Make(dtypes.Float32, bs, v.Channels, v.ImageSize, v.ImageSize)}
	prog, err := nn.Compile(t.env.Backend, set, dtypes.Float32, false, shp, func(s nn.Scope, in []*Node) []*Node {
		z := t.Model.Features(s, in[0]) // [B,1+N,D]
		mean := ReduceMean(nn.GatherTokens(z, AddScalar(Iota(z.Graph(), shapes.Make(dtypes.Int64, bs, v.NumPatches()), 1), 1)), 1)
		cls := Reshape(nn.GatherTokens(z, Zeros(z.Graph(), shapes.Make(dtypes.Int64, bs, 1))), bs, v.Dim)
		if tokens {
			return []*Node{cls, mean, z}
		}
		return []*Node{cls, mean}
	})
	if err != nil {
		return Pooled{}, eval.Tokens{}, err
	}
	defer prog.Finalize()
	lc := t.evalLoaderConfig()
	lc.BatchSize = bs
	loader := data.NewLoader(t.Data, split, lc, 0)
	defer loader.Close()
	nt := v.NumPatches() + 1
	labels := append([]int(nil), split.Labels...)
	newF := func() eval.Features {
		return eval.Features{N: split.N, D: v.Dim, Labels: labels, X: make([]float32, 0, split.N*v.Dim)}
	}
	f := Pooled{Cls: newF(), Mean: newF()}
	var tk eval.Tokens
	if tokens {
		tk = eval.Tokens{N: split.N, T: nt, D: v.Dim, Labels: labels, X: make([]float32, 0, split.N*nt*v.Dim)}
	}
	il := t.Data.ImageLen()
	start, batches := time.Now(), 0
	for done := 0; done < split.N; {
		if err := ctx.Err(); err != nil {
			return Pooled{}, eval.Tokens{}, fmt.Errorf("extracting features: stopped at image %d/%d: %w", done, split.N, err)
		}
		b := loader.Next()
		if b.Err != nil {
			return f, tk, b.Err
		}
		batches++
		n := len(b.Labels)
		img := b.Images
		if n < bs {
			img = append(img, make([]float32, (bs-n)*il)...)
		}
		in := tensors.FromFlatDataAndDimensions(img, bs, v.Channels, v.ImageSize, v.ImageSize)
		out, err := prog.Run(params, nil, in)
		nn.Free(in)
		if err != nil {
			return f, tk, err
		}
		f.Cls.X = append(f.Cls.X, nn.Float32s(out[0])[:n*v.Dim]...)
		f.Mean.X = append(f.Mean.X, nn.Float32s(out[1])[:n*v.Dim]...)
		if tokens {
			tk.X = append(tk.X, nn.Float32s(out[2])[:n*nt*v.Dim]...)
		}
		nn.Free(out...)
		done += n
	}
	fmt.Fprintf(t.env.Log, "  features: %d images in %d batches of %d (%.1fs)\n", split.N, batches, bs, time.Since(start).Seconds())
	return f, tk, nil
}

// rawPixels are the images themselves as features (normalised as the loader does).
func (t *Trial) rawPixels(split *data.Split) (eval.Features, error) {
	loader := data.NewLoader(t.Data, split, t.evalLoaderConfig(), 0)
	defer loader.Close()
	il := t.Data.ImageLen()
	f := eval.Features{N: split.N, D: il, Labels: append([]int(nil), split.Labels...), X: make([]float32, 0, split.N*il)}
	for len(f.X) < split.N*il {
		b := loader.Next()
		if b.Err != nil || len(b.Images) == 0 {
			return f, fmt.Errorf("raw pixels: reading %d images: %v", split.N, b.Err)
		}
		f.X = append(f.X, b.Images...)
	}
	return f, nil
}

// runReadings runs the readings asked for on one set of encoder parameters; report gets each top-1 under
// the reading's name. alive is called while long protocols (fine-tuning) train.
func (t *Trial) runReadings(ctx context.Context, set *nn.ParamSet, params []*tensors.Tensor, readings []eval.Reading, alive func(), report func(name, metric string, v float64) error) error {
	ec := t.Cfg.Eval
	needTokens, needFeatures := false, false
	for _, r := range readings {
		needTokens = needTokens || r.Protocol == "attentive"
		needFeatures = needFeatures || r.Protocol != "finetune"
	}
	var ftr, fte Pooled
	var ttr, tte eval.Tokens
	if needFeatures {
		var err error
		if ftr, ttr, err = t.ExtractCtx(ctx, set, params, &t.Data.Train, needTokens); err != nil {
			return err
		}
		if fte, tte, err = t.ExtractCtx(ctx, set, params, &t.Data.Test, needTokens); err != nil {
			return err
		}
	}
	for _, r := range readings {
		if ctx.Err() != nil {
			return ctx.Err()
		}
		start := time.Now()
		var acc float64
		var err error
		var extra []metricValue // recorded before top1: a reading is done once its top1 is stored
		note := ""
		switch r.Protocol {
		case "linear":
			acc, extra, note, err = linearReading(ctx, ftr.Get(r.Feature), fte.Get(r.Feature), ec)
		case "knn":
			acc, err = eval.KNNCtx(ctx, ftr.Get(r.Feature), fte.Get(r.Feature), ec.KNNK, ec.KNNTemperature)
		case "attentive":
			acc, err = eval.Attentive(ctx, t.env.Backend, ttr, tte, eval.AttentiveConfig{Heads: t.Model.ViT.Heads, Epochs: ec.AttEpochs, LR: ec.AttLR,
				Batch: ec.AttBatch, Optimizer: ec.AttOptimizer, WD: ec.AttWD, Seed: t.Cfg.Train.Seed})
		case "finetune":
			acc, err = t.Finetune(ctx, set, params, r.Feature, r.Labels, alive)
		}
		if err != nil {
			return fmt.Errorf("eval %s: %w", r.Name, err)
		}
		if note != "" {
			note = "; " + note
		}
		fmt.Fprintf(t.env.Log, "  %s: top-1 %.4f (%.1fs%s)\n", r.Name, acc, time.Since(start).Seconds(), note)
		for _, m := range append(extra, metricValue{"top1", acc}) {
			if err := report(r.Name, m.metric, m.v); err != nil {
				return err
			}
		}
	}
	return nil
}

// metricValue is one metric of a reading (evals.metric).
type metricValue struct {
	metric string
	v      float64
}

// linearReading fits a linear probe. Beside its top-1 it returns the evals rows that say how L-BFGS ended
// (lbfgs_iterations; lbfgs_grad_norm, the gradient's infinity norm where it stopped; lbfgs_converged, 1
// converged, 0 stopped at the iteration limit, -1 stopped by a failure) and the log's account of the fit.
func linearReading(ctx context.Context, train, test eval.Features, ec *eval.Config) (float64, []metricValue, string, error) {
	fit, err := eval.LinearProbeCtx(ctx, train, test, ec.LinearL2, ec.LinearMaxIter)
	if err != nil {
		return 0, nil, "", err
	}
	ms := []metricValue{{"lbfgs_iterations", float64(fit.Iterations)}, {"lbfgs_grad_norm", fit.GradNorm}, {"lbfgs_converged", fit.Outcome()}}
	var note string
	switch {
	case fit.Converged:
		note = fmt.Sprintf("L-BFGS converged in %d iterations", fit.Iterations)
	case fit.Failure != "":
		note = fmt.Sprintf("L-BFGS stopped after %d iterations, unconverged (gradient norm %.1e): %s", fit.Iterations, fit.GradNorm, fit.Failure)
	default:
		note = fmt.Sprintf("L-BFGS stopped at its limit of %d iterations, unconverged (gradient norm %.1e)", fit.Iterations, fit.GradNorm)
	}
	return fit.Top1, ms, note, nil
}

// baselineEval is the part of [eval] a reference row depends on, with the field names and order eval.Config
// had before fine-tuning and probes along training existed, so those reference rows keep their keys.
type baselineEval struct {
	Protocols      []string
	Feature        string
	Batch          int
	LinearL2       float64
	LinearMaxIter  int
	KNNK           int
	KNNTemperature float64
	AttEpochs      int
	AttLR          float64
	AttBatch       int
	AttOptimizer   string
	AttWD          float64
	Baselines      bool
}

// finetuneEval are the keys a fine-tuning reference row (training from scratch) also depends on.
type finetuneEval struct {
	baselineEval
	FTEpochs, FTMinSteps, FTBatch                                          int
	FTLR, FTMinLR, FTWarmupEpochs, FTLayerDecay, FTWeightDecay, FTDropPath float64
	FTLabelSmoothing                                                       float64
}

// BaselineKeys identify the reference rows a trial is read against: raw pixels of its data, and its encoder
// architecture at random initialisation on its data with its eval settings (the steps it is read at and the
// protocol list left out; the fine-tuning keys only when it fine-tunes).
func (t *Trial) BaselineKeys() (raw, random string) {
	ec := t.Cfg.Eval
	b := baselineEval{Feature: ec.Feature, Batch: ec.Batch, LinearL2: ec.LinearL2, LinearMaxIter: ec.LinearMaxIter, KNNK: ec.KNNK,
		KNNTemperature: ec.KNNTemperature, AttEpochs: ec.AttEpochs, AttLR: ec.AttLR, AttBatch: ec.AttBatch, AttOptimizer: ec.AttOptimizer, AttWD: ec.AttWD}
	var e []byte
	if slices.Contains(ec.Protocols, "finetune") {
		e, _ = json.Marshal(finetuneEval{b, ec.FTEpochs, ec.FTMinSteps, ec.FTBatch, ec.FTLR, ec.FTMinLR, ec.FTWarmupEpochs, ec.FTLayerDecay,
			ec.FTWeightDecay, ec.FTDropPath, ec.FTLabelSmoothing})
	} else {
		e, _ = json.Marshal(b)
	}
	a, _ := json.Marshal(struct {
		Enc  any
		Eval string
	}{t.Cfg.res.Sections["encoder"], string(e)})
	return "raw_pixels|" + DataKey(t.Cfg.Data) + "|" + string(e), "random_init|" + DataKey(t.Cfg.Data) + "|" + string(a)
}

// Evaluate runs the [eval] readings on the trained encoder (the final evaluation), and the reference rows
// once per key.
func (t *Trial) Evaluate(ctx context.Context, trialID int64, set *nn.ParamSet, params []*tensors.Tensor, rec runner.Recorder) error {
	return t.evaluate(ctx, trialID, store.Final, set, params, rec)
}

// evaluate runs the readings at a pretraining step (store.Final for the final evaluation), skipping those
// already stored (a resumed trial keeps what it evaluated), then the reference rows it lacks.
func (t *Trial) evaluate(ctx context.Context, trialID int64, step int, set *nn.ParamSet, params []*tensors.Tensor, rec runner.Recorder) error {
	ec := t.Cfg.Eval
	if len(ec.Protocols) == 0 {
		return nil
	}
	s := rec.Store()
	var done map[string]map[string]float64
	if step == store.Final {
		d, err := s.Evals(trialID)
		if err != nil {
			return err
		}
		done = d
	} else {
		d, err := s.EvalsAlong(trialID)
		if err != nil {
			return err
		}
		done = d[step]
	}
	// The parameter sets eval.encoder reads: the encoder and/or the method's EMA teacher, aliased under
	// "encoder." so that every protocol reads it as an encoder.
	type readSet struct {
		name   string
		params []*tensors.Tensor
		todo   []eval.Reading
	}
	var sets []readSet
	for _, name := range []string{"encoder", "teacher"} {
		rs, ok := ec.EncoderReadings()[name]
		if !ok {
			continue
		}
		ps := params
		if name == "teacher" {
			var err error
			if ps, err = t.teacherParams(set, params); err != nil {
				return err
			}
		}
		var todo []eval.Reading
		for _, r := range rs {
			if _, ok := done[r.Name]["top1"]; !ok {
				todo = append(todo, r)
			}
		}
		sets = append(sets, readSet{name, ps, todo})
	}
	// The step the encoder was read at feeds the heartbeat (and the attempt's end step): the final
	// evaluation reads the trained encoder, at the last training step (it used to report step 0).
	readAt := step
	if step == store.Final {
		total, err := t.TotalSteps()
		if err != nil {
			return err
		}
		readAt = total
	}
	alive := func() { rec.Progress(readAt) }
	for _, rs := range sets {
		if len(rs.todo) == 0 {
			continue
		}
		at := "the trained " + rs.name
		if step != store.Final {
			at = fmt.Sprintf("the %s at step %d", rs.name, step)
		}
		fmt.Fprintf(t.env.Log, "trial %d: evaluating %s (%s)\n", trialID, at, readingNames(rs.todo))
		if err := t.runReadings(ctx, set, rs.params, rs.todo, alive, func(name, metric string, v float64) error {
			if step == store.Final {
				return rec.Eval(name, metric, v)
			}
			return rec.EvalAt(step, name, metric, v)
		}); err != nil {
			return err
		}
	}
	if !ec.Baselines {
		return nil
	}
	// Each reference row is computed once per process, under its own lock: a trial that finds one row
	// being computed by another computes the other row meanwhile, then waits for the first (the quickstart's
	// two workers used to compute both rows one after the other while the second core idled).
	rawKey, randKey := t.BaselineKeys()
	refs := []struct {
		key string
		run func() error
	}{
		{rawKey, func() error { return t.rawReference(ctx, s, rawKey) }},
		{randKey, func() error { return t.randomReference(ctx, s, set, randKey, alive) }},
	}
	// The unlocks are deferred inside each call: the runner turns a panic in a job into a failed trial and
	// goes on, and a row's lock left held would block every later trial of the process for good.
	locked := func(unlock func(), run func() error) error {
		defer unlock()
		return run()
	}
	var busy []int
	for i, r := range refs {
		unlock, ok := t.env.tryLockReference(r.key)
		if !ok {
			busy = append(busy, i)
			continue
		}
		if err := locked(unlock, r.run); err != nil {
			return err
		}
	}
	for _, i := range busy {
		unlock := t.env.waitReference(refs[i].key, alive)
		if err := ctx.Err(); err != nil {
			unlock()
			return err
		}
		if err := locked(unlock, refs[i].run); err != nil {
			return err
		}
	}
	return nil
}

// teacherParams are params with the encoder's entries replaced by the method's EMA teacher's.
func (t *Trial) teacherParams(set *nn.ParamSet, params []*tensors.Tensor) ([]*tensors.Tensor, error) {
	th, ok := t.Model.Method.(method.Teacher)
	if !ok {
		return nil, fmt.Errorf("eval.encoder = %q: method.name = %q has no EMA teacher", t.Cfg.Eval.Encoder, t.Model.Name)
	}
	out, kept, err := set.Alias(params, "encoder", th.TeacherPrefix())
	for _, k := range kept {
		if k != "mask_token" { // the student's mask token: the probes never mask
			return nil, fmt.Errorf("eval.encoder = %q: the teacher of %q has no encoder.%s", t.Cfg.Eval.Encoder, t.Model.Name, k)
		}
	}
	return out, err
}

// rawReference computes the raw-pixel reference readings (linear, k-NN) its key lacks.
func (t *Trial) rawReference(ctx context.Context, s *store.Store, rawKey string) error {
	ec := t.Cfg.Eval
	var todo []eval.Reading
	for _, r := range ec.Readings() {
		if r.Protocol == "linear" || r.Protocol == "knn" {
			if _, ok, _ := s.Baseline(rawKey, r.Name, "top1"); !ok {
				todo = append(todo, r)
			}
		}
	}
	if len(todo) == 0 {
		return nil
	}
	fmt.Fprintf(t.env.Log, "reference: raw pixels (%s)\n", readingNames(todo))
	ftr, err := t.rawPixels(&t.Data.Train)
	if err != nil {
		return err
	}
	fte, err := t.rawPixels(&t.Data.Test)
	if err != nil {
		return err
	}
	for _, r := range todo {
		var acc float64
		var err error
		var extra []metricValue
		note := ""
		if r.Protocol == "linear" {
			acc, extra, note, err = linearReading(ctx, ftr, fte, ec)
			note = " (" + note + ")"
		} else {
			acc, err = eval.KNNCtx(ctx, ftr, fte, ec.KNNK, ec.KNNTemperature)
		}
		if err != nil {
			return err
		}
		fmt.Fprintf(t.env.Log, "  raw pixels %s: top-1 %.4f%s\n", r.Name, acc, note)
		for _, m := range append(extra, metricValue{"top1", acc}) {
			if err := s.SetBaseline(rawKey, t.Cfg.Data.Name, "raw_pixels", r.Name, m.metric, m.v); err != nil {
				return err
			}
		}
	}
	return nil
}

// randomReference computes the readings its key lacks on the trial's encoder at random initialisation.
func (t *Trial) randomReference(ctx context.Context, s *store.Store, set *nn.ParamSet, randKey string, alive func()) error {
	var todo []eval.Reading
	for _, r := range t.Cfg.Eval.Readings() {
		if _, ok, _ := s.Baseline(randKey, r.Name, "top1"); !ok {
			todo = append(todo, r)
		}
	}
	if len(todo) == 0 {
		return nil
	}
	arch := fmt.Sprintf("vit d%d x%d h%d p%d", t.Model.ViT.Dim, t.Model.ViT.Depth, t.Model.ViT.Heads, t.Model.ViT.PatchSize)
	fmt.Fprintf(t.env.Log, "reference: %s at random initialisation (%s)\n", arch, readingNames(todo))
	rp := set.InitParamsByName(dtypes.Float32, 0)
	defer nn.Free(rp...)
	return t.runReadings(ctx, set, rp, todo, alive, func(name, metric string, v float64) error {
		return s.SetBaseline(randKey, t.Cfg.Data.Name, arch+" random init", name, metric, v)
	})
}

func readingNames(rs []eval.Reading) string {
	names := make([]string, len(rs))
	for i, r := range rs {
		names[i] = r.Name
	}
	return strings.Join(names, ", ")
}

// LoadExported returns the parameters of a finished trial from its exported encoder (encoder.safetensors)
// when its checkpoint is gone: the encoder's parameters as trained, every other parameter at its
// initialisation, and the trial's last step. What reads only the encoder (attention maps and their
// concentration, features) needs nothing more, so a results folder can keep the exports alone (0.8 MB a
// trial at the quickstart's size, against 2.5-6 MB for a checkpoint with its optimiser state).
func (t *Trial) LoadExported() (*nn.ParamSet, []*tensors.Tensor, int, error) {
	path := filepath.Join(t.Dir, "encoder.safetensors")
	arr, _, err := nn.LoadSafetensors(path)
	if err != nil {
		return nil, nil, 0, fmt.Errorf("exported encoder %s: %w", path, err)
	}
	total, err := t.TotalSteps()
	if err != nil {
		return nil, nil, 0, err
	}
	tr, err := t.newTrainer(nn.FP32)
	if err != nil {
		return nil, nil, 0, err
	}
	nn.Free(tr.M...)
	nn.Free(tr.V...)
	delete(arr, "pos_embed") // the fixed sin-cos table, not a parameter
	if err := nn.FromArrays(tr.Set, arr, "encoder.", tr.Params); err != nil {
		nn.Free(tr.Params...)
		return nil, nil, 0, fmt.Errorf("exported encoder %s: %w", path, err)
	}
	return tr.Set, tr.Params, total, nil
}

// LoadTrained returns the parameters of a finished (or interrupted) trial from its checkpoint.
func (t *Trial) LoadTrained() (*nn.ParamSet, []*tensors.Tensor, int, error) {
	tr, err := t.newTrainer(nn.FP32) // evaluation is float32, whatever train.precision trained it
	if err != nil {
		return nil, nil, 0, err
	}
	ok, err := t.LoadCheckpoint(tr)
	if err != nil {
		return nil, nil, 0, err
	}
	if !ok {
		return nil, nil, 0, fmt.Errorf("trial has no checkpoint at %s (not run yet?)", t.checkpointPath())
	}
	nn.Free(tr.M...) // the optimiser state is not wanted; the caller frees the parameters (nn.Free)
	nn.Free(tr.V...)
	return tr.Set, tr.Params, tr.Step, nil
}
