package experiment

import (
	"context"
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math"
	"math/rand/v2"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"time"

	"mimlab/components/masking"
	"mimlab/components/method"
	"mimlab/components/targets"
	"mimlab/data"
	"mimlab/framework/files"
	"mimlab/framework/runner"
	"mimlab/framework/store"
	"mimlab/nn"

	"github.com/gomlx/compute/dtypes"
	"github.com/gomlx/gomlx/core/tensors"
)

// Trial is a prepared trial: data, model, target and configs.
type Trial struct {
	Cfg   Configs
	Data  *data.Dataset
	Model *method.Model
	Mask  masking.Strategy // nil when the method needs no masks
	Dir   string
	env   *Env
}

// Prepare loads the data and builds the model of a resolved trial.
func (e *Env) Prepare(hash string) (*Trial, error) { return e.PrepareCtx(context.Background(), hash) }

// PrepareCtx is Prepare whose long parts (training a tokenizer) stop within a step of ctx's cancellation.
func (e *Env) PrepareCtx(ctx context.Context, hash string) (*Trial, error) {
	if !store.ValidHash(hash) {
		return nil, fmt.Errorf("trial hash %q is not 16 hex digits (a damaged database?)", hash)
	}
	dir, err := runDir(e.RunsDir, hash)
	if err != nil {
		return nil, err
	}
	res, err := e.spec(hash)
	if err != nil {
		return nil, err
	}
	c := Typed(res)
	ds, err := e.Dataset(c.Data)
	if err != nil {
		return nil, err
	}
	meth, err := build(method.Registry, c, "method")
	if err != nil {
		return nil, err
	}
	var target targets.Target
	if meth.Needs().Target {
		f, err := build(targets.Registry, c, "targets")
		if err != nil {
			return nil, err
		}
		target, err = f.Prepare(targets.Env{Backend: e.Backend, Data: ds, DataKey: DataKey(c.Data), Patch: c.Data.PatchSize, CacheDir: e.CacheDir, Log: e.Log, Normalized: c.Data.Normalize, Ctx: ctx})
		if err != nil {
			return nil, err
		}
	}
	m, err := assemble(c, ds.Channels, ds.Classes, target)
	if err != nil {
		closeTarget(target)
		return nil, err
	}
	if err := m.Check(); err != nil {
		closeTarget(target)
		return nil, err
	}
	var strat masking.Strategy
	if meth.Needs().Mask {
		if strat, err = build(masking.Registry, c, "masking"); err != nil {
			closeTarget(target)
			return nil, err
		}
	}
	return &Trial{Cfg: c, Data: ds, Model: m, Mask: strat, Dir: dir, env: e}, nil
}

func closeTarget(t targets.Target) {
	if c, ok := t.(targets.Closer); ok {
		c.Close()
	}
}

// Close frees what the trial holds in the engine (a tokenizer's parameters and programs).
func (t *Trial) Close() { closeTarget(t.Model.Target) }

// FindDir points the trial at its runs folder under its old identity when it has none under its current
// one (a trial re-identified after its checkpoints were written, whose link under the new name is missing).
func (t *Trial) FindDir(legacyHash string) {
	if _, err := os.Stat(t.Dir); err == nil || !store.ValidHash(legacyHash) {
		return
	}
	old := filepath.Join(t.env.RunsDir, legacyHash)
	if st, err := os.Stat(old); err == nil && st.IsDir() {
		t.Dir = old
	}
}

// TotalSteps is train.steps, or epochs x batches per epoch; an error when that is no step at all (a batch
// larger than the training set) or more than MaxSteps.
func (t *Trial) TotalSteps() (int, error) {
	if t.Cfg.Train.Steps > 0 {
		return t.Cfg.Train.Steps, nil
	}
	eb := t.Cfg.Train.EffectiveBatch(t.Cfg.Data.BatchSize)
	per := t.Data.Train.N / eb
	if per < 1 {
		return 0, fmt.Errorf("data.batch_size = %d x train.accum_steps = %d: larger than the %d training images, so train.epochs = %d gives no step (lower the batch or set train.steps)",
			t.Cfg.Data.BatchSize, t.Cfg.Train.AccumSteps, t.Data.Train.N, t.Cfg.Train.Epochs)
	}
	if t.Cfg.Train.Epochs > MaxSteps/per {
		return 0, fmt.Errorf("train.epochs = %d x %d batches per epoch: more than %d steps", t.Cfg.Train.Epochs, per, MaxSteps)
	}
	return t.Cfg.Train.Epochs * per, nil
}

func (t *Trial) loaderConfig(train bool) data.LoaderConfig {
	c := t.Cfg.Data
	lc := data.LoaderConfig{BatchSize: c.BatchSize, Seed: t.Cfg.Train.Seed, Normalize: c.Normalize}
	if train {
		// One optimiser step reads the effective batch; StepInputs cuts it into the micro-batches, so a
		// batch of 64 x accum_steps 4 sees the images, masks and drop path of one batch of 256.
		lc.BatchSize = t.Cfg.Train.EffectiveBatch(c.BatchSize)
		lc.Shuffle, lc.DropLast, lc.Augment = true, true, c.Augment
		lc.CropScale = [2]float64{c.CropScale[0], c.CropScale[1]}
	}
	return lc
}

// trainLoaderConfig is the pretraining loader's: loaderConfig(true), with a second view of every image when
// the method compares two (fine-tuning and the probes read one view).
func (t *Trial) trainLoaderConfig() data.LoaderConfig {
	lc := t.loaderConfig(true)
	lc.TwoViews = t.Model.Method.Needs().TwoViews
	return lc
}

// evalLoaderConfig reads a split in order, unaugmented, in batches of eval.batch: the size the feature and
// accuracy graphs are compiled for. (It used data.batch_size, so each 256-image graph ran on 64 images and
// padding: feature extraction took 4x as long as it needed, BENCHMARKS.md, issue 18.)
func (t *Trial) evalLoaderConfig() data.LoaderConfig {
	lc := t.loaderConfig(false)
	lc.BatchSize = t.Cfg.Eval.Batch
	return lc
}

// StepInputs turns a batch into the training step's data tensors, in the order of Model.DataShapes:
// images, then masks (a pure function of (seed, step, sample)) when the method needs them, the target's host
// input when it has one, labels when the method needs them, the second view when the method needs two (from
// a loader made by trainLoaderConfig).
func (t *Trial) StepInputs(b data.Batch) ([]*tensors.Tensor, error) { return t.stepInputs(b, 0) }

// microBatches are StepInputs of the k micro-batches of b (train.accum_steps), each computed on its own rows
// (the target's host input, a tokenizer's forward pass, runs on one micro-batch at a time) with the masks of
// its samples' places in the effective batch, so the k micro-batches hold what one batch of all of them would.
func (t *Trial) microBatches(b data.Batch, k int) ([][]*tensors.Tensor, error) {
	n := len(b.Labels) / k
	il := len(b.Images) / max(len(b.Labels), 1)
	out := make([][]*tensors.Tensor, 0, k)
	for j := 0; j < k; j++ {
		sub := data.Batch{Images: b.Images[j*n*il : (j+1)*n*il], Labels: b.Labels[j*n : (j+1)*n], Step: b.Step}
		if b.Images2 != nil {
			sub.Images2 = b.Images2[j*n*il : (j+1)*n*il]
		}
		in, err := t.stepInputs(sub, j*n)
		if err != nil {
			for _, m := range out {
				nn.Free(m...)
			}
			return nil, err
		}
		out = append(out, in)
	}
	return out, nil
}

// stepInputs is StepInputs for samples that sit from offset on in their step's effective batch (the masks
// are a function of (seed, step, place)).
func (t *Trial) stepInputs(b data.Batch, offset int) ([]*tensors.Tensor, error) {
	v := t.Model.ViT
	bs := len(b.Labels)
	out := []*tensors.Tensor{tensors.FromFlatDataAndDimensions(b.Images, bs, v.Channels, v.ImageSize, v.ImageSize)}
	need := t.Model.Method.Needs()
	if need.Mask {
		n, g, k := v.NumPatches(), v.Grid(), t.Model.NumMasked
		vis := make([]int64, 0, bs*(n-k))
		msk := make([]int64, 0, bs*k)
		mf := make([]float32, bs*n)
		for i := 0; i < bs; i++ {
			r := rand.New(rand.NewPCG(t.Cfg.Train.Seed^0x6d61736b, uint64(b.Step)<<20|uint64(offset+i)))
			vi, mi := masking.Indices(t.Mask.Mask(r, g))
			if len(mi) != k {
				nn.Free(out...)
				return nil, fmt.Errorf("masking %s returned %d masked patches, want %d", t.Cfg.Impl("masking"), len(mi), k)
			}
			vis, msk = append(vis, vi...), append(msk, mi...)
			for _, j := range mi {
				mf[i*n+int(j)] = 1
			}
		}
		out = append(out, tensors.FromFlatDataAndDimensions(vis, bs, n-k), tensors.FromFlatDataAndDimensions(msk, bs, k),
			tensors.FromFlatDataAndDimensions(mf, bs, n))
	}
	if h := t.Model.HostInput(); h != nil {
		x, err := h.Input(b.Images, bs)
		if err != nil {
			nn.Free(out...)
			return nil, err
		}
		out = append(out, x)
	}
	if need.Labels {
		out = append(out, tensors.FromFlatDataAndDimensions(append([]int64(nil), b.Labels...), bs))
	}
	if need.TwoViews {
		if len(b.Images2) != len(b.Images) {
			nn.Free(out...)
			return nil, fmt.Errorf("method %s needs two views of each image; the batch of step %d has %d values of a second view, want %d (a loader without TwoViews)",
				t.Cfg.Impl("method"), b.Step, len(b.Images2), len(b.Images))
		}
		out = append(out, tensors.FromFlatDataAndDimensions(b.Images2, bs, v.Channels, v.ImageSize, v.ImageSize))
	}
	return out, nil
}

func (t *Trial) optimizer() nn.Optimizer {
	tc := t.Cfg.Train
	return nn.Optimizer{Beta1: tc.Beta1, Beta2: tc.Beta2, Eps: 1e-8, WeightDecay: tc.WeightDecay, Clip: tc.Clip}
}

// NewTrainer builds the trainer (parameters initialised from train.seed).
// The training step's matrix products follow train.precision, which the backend must support.
func (t *Trial) NewTrainer() (*nn.Trainer, error) {
	p := nn.Precision(t.Cfg.Train.Precision)
	if err := nn.CheckPrecision(t.env.BackendName, p); err != nil {
		return nil, err
	}
	return t.newTrainer(p)
}

// newTrainer is NewTrainer in precision p, unchecked: the parameters do not depend on it (LoadTrained holds a
// bf16 trial's float32 master weights on any backend, to evaluate them in float32).
func (t *Trial) newTrainer(p nn.Precision) (*nn.Trainer, error) {
	return nn.NewTrainer(t.env.Backend, dtypes.Float32, nn.WithPrecision(p, t.Model.Loss), t.Model.DataShapes(t.Cfg.Data.BatchSize), t.optimizer(), t.Cfg.Train.Seed)
}

func (t *Trial) checkpointPath() string { return filepath.Join(t.Dir, "checkpoint.safetensors") }

// SaveCheckpoint writes parameters, AdamW moments and the step atomically.
func (t *Trial) SaveCheckpoint(tr *nn.Trainer) error {
	return t.saveCheckpointAs(tr, t.checkpointPath())
}

func (t *Trial) saveCheckpointAs(tr *nn.Trainer, path string) error {
	arr := map[string]nn.Array{"step": {Shape: []int{1}, I64: []int64{int64(tr.Step)}}}
	for i, p := range tr.Set.Params {
		arr["param/"+p.Name] = nn.Array{Shape: p.Dims, F32: nn.Float32s(tr.Params[i])}
		arr["m/"+p.Name] = nn.Array{Shape: p.Dims, F32: nn.Float32s(tr.M[i])}
		arr["v/"+p.Name] = nn.Array{Shape: p.Dims, F32: nn.Float32s(tr.V[i])}
	}
	return nn.SaveSafetensors(path, arr, map[string]string{"format": "mimlab-checkpoint-1", "content_sha256": contentSHA(arr)})
}

// contentSHA is a checkpoint's own checksum: sha256 over its tensors (names sorted, shapes, little-endian
// values). It lets a checkpoint written just before a kill, whose record in the database is older, prove it
// is intact; a damaged one fails it.
func contentSHA(arr map[string]nn.Array) string {
	names := make([]string, 0, len(arr))
	for n := range arr {
		names = append(names, n)
	}
	sort.Strings(names)
	h := sha256.New()
	var b [8]byte
	for _, n := range names {
		a := arr[n]
		fmt.Fprintf(h, "%s%v;", n, a.Shape)
		for _, x := range a.F32 {
			binary.LittleEndian.PutUint32(b[:4], math.Float32bits(x))
			h.Write(b[:4])
		}
		for _, x := range a.I64 {
			binary.LittleEndian.PutUint64(b[:], uint64(x))
			h.Write(b[:])
		}
	}
	return hex.EncodeToString(h.Sum(nil))
}

// LoadCheckpoint restores a trainer; false when there is no checkpoint.
func (t *Trial) LoadCheckpoint(tr *nn.Trainer) (bool, error) {
	arr, _, err := nn.LoadSafetensors(t.checkpointPath())
	if errors.Is(err, os.ErrNotExist) {
		return false, nil
	}
	if err != nil {
		return false, fmt.Errorf("checkpoint %s: %w", t.checkpointPath(), err)
	}
	for i, p := range tr.Set.Params {
		for _, part := range []struct {
			pre string
			dst []*tensors.Tensor
		}{{"param/", tr.Params}, {"m/", tr.M}, {"v/", tr.V}} {
			a, ok := arr[part.pre+p.Name]
			if !ok || a.Size() != p.Size() {
				return false, fmt.Errorf("checkpoint %s: %s%s missing or of another shape (the model changed?)", t.checkpointPath(), part.pre, p.Name)
			}
			part.dst[i] = nn.TensorOf(dtypes.Float32, a.F32, p.Dims...)
		}
	}
	st, ok := arr["step"]
	if !ok || len(st.I64) != 1 {
		return false, fmt.Errorf("checkpoint %s: no step (not a mimlab checkpoint?)", t.checkpointPath())
	}
	tr.Step = int(st.I64[0])
	return true, nil
}

// verifyCheckpoint checks a checkpoint on disk against the sha256 recorded when it was written: a damaged
// or foreign file is moved aside (checkpoint.safetensors.damaged) and the trial starts from scratch, saying
// so, rather than resuming from bytes nobody wrote.
func (t *Trial) verifyCheckpoint(s *store.Store, trialID int64) error {
	path := t.checkpointPath()
	if _, err := os.Stat(path); err != nil {
		return nil
	}
	want, err := s.ArtifactSHA(trialID, "checkpoint")
	if err != nil {
		return fmt.Errorf("trial %d: reading its checkpoint record: %w", trialID, err)
	}
	got, err := runner.FileSHA(path)
	if err == nil && want != "" && got == want {
		return nil
	}
	// Not the recorded file: a checkpoint written just before a kill (its record not yet updated) is intact
	// if its own checksum verifies.
	if arr, meta, lerr := nn.LoadSafetensors(path); lerr == nil && meta["content_sha256"] != "" && meta["content_sha256"] == contentSHA(arr) {
		fmt.Fprintf(t.env.Log, "trial %d: checkpoint %s is newer than its record; its own checksum verifies\n", trialID, path)
		return nil
	}
	why := "no record of it in the database"
	if err != nil {
		why = err.Error()
	} else if want != "" {
		why = fmt.Sprintf("sha256 %.12s, recorded %.12s", got, want)
	}
	aside := path + ".damaged"
	for i := 2; ; i++ { // never overwrite an earlier damaged file
		if _, err := os.Lstat(aside); err != nil {
			break
		}
		aside = fmt.Sprintf("%s.damaged.%d", path, i)
	}
	if err := os.Rename(path, aside); err != nil {
		return fmt.Errorf("checkpoint %s does not match its record (%s) and cannot be moved aside: %w", path, why, err)
	}
	fmt.Fprintf(t.env.Log, "trial %d: checkpoint %s does not match its record (%s): moved to %s, training from scratch\n", trialID, path, why, aside)
	return nil
}

// Job is the runner's job: train (resuming from a checkpoint), evaluate, export.
func (e *Env) Job(ctx context.Context, st *store.Trial, rec runner.Recorder) error {
	s := rec.Store()
	prov := e.Provenance()
	if err := s.SetProvenance(st.ID, rec.Owner(), st.Attempts, prov); err != nil {
		return err
	}
	if _, err := e.spec(st.Hash); err != nil {
		// A worker that did not expand this trial's spec (another host, an edited spec file): the stored
		// spec is the trial's definition.
		res, err := CheckStored(st.Spec)
		if err != nil {
			return fmt.Errorf("trial %d: %w", st.ID, err)
		}
		if h := res.Hash(); h != st.Hash {
			return fmt.Errorf("trial %d: its stored spec resolves to %s, not its identity %s (a `sweep run` re-identifies stored trials)", st.ID, h, st.Hash)
		}
		e.AddSpec(st.Hash, res)
	}
	t, err := e.PrepareCtx(ctx, st.Hash)
	if err != nil {
		return err
	}
	defer t.Close()
	t.FindDir(st.LegacyHash)
	if tk, ok := t.Model.Target.(targets.Tokenized); ok && tk.Tokenizer() != nil {
		tok := tk.Tokenizer()
		for k, v := range tok.Info() {
			if err := rec.Eval("tokenizer", k, v); err != nil {
				return fmt.Errorf("recording the tokenizer: %w", err)
			}
		}
		if tok.Path() != "" {
			if err := rec.Artifact("tokenizer", tok.Path()); err != nil {
				return fmt.Errorf("recording the tokenizer: %w", err)
			}
		}
	}
	if err := os.MkdirAll(t.Dir, 0o755); err != nil {
		return err
	}
	if err := writeOwner(t.Dir, st, rec.Owner()); err != nil {
		return err
	}
	// This worker holds the trial, so it is its folder's only writer: temporary files there are a killed
	// attempt's half-written checkpoints or exports. Best effort: what cannot be removed is only clutter.
	gone, err := files.RemoveTemps(t.Dir)
	if len(gone) > 0 {
		fmt.Fprintf(e.Log, "trial %d: removed %d temporary file(s) a killed attempt left: %s\n", st.ID, len(gone), strings.Join(gone, ", "))
	}
	if err != nil {
		fmt.Fprintf(e.Log, "trial %d: could not remove a killed attempt's temporary files (%v); going on\n", st.ID, err)
	}
	tr, err := t.NewTrainer()
	if err != nil {
		return err
	}
	defer tr.Finalize()
	if err := t.verifyCheckpoint(s, st.ID); err != nil {
		return err
	}
	resumed, err := t.LoadCheckpoint(tr)
	if err != nil {
		return err
	}
	total, err := t.TotalSteps()
	if err != nil {
		return err
	}
	if resumed && (tr.Step < 0 || tr.Step > total) {
		return fmt.Errorf("checkpoint %s: step %d outside [0, %d]: it is not this trial's (delete it to start again)", t.checkpointPath(), tr.Step, total)
	}
	if err := s.AttemptFrom(st.ID, rec.Owner(), st.Attempts, tr.Step); err != nil {
		return fmt.Errorf("trial %d: recording where this attempt starts: %w", st.ID, err)
	}
	rec.Progress(tr.Step) // this attempt is at its start step (the heartbeat had the previous attempt's)
	if resumed {
		fmt.Fprintf(e.Log, "trial %d %s: resuming from its checkpoint at step %d/%d\n", st.ID, e.displayName(st), tr.Step, total)
		if err := rec.Lease().TruncateMetrics(tr.Step); err != nil {
			return err
		}
	}
	if err := t.train(ctx, st, tr, rec, total); err != nil {
		return err
	}
	if err := t.Evaluate(ctx, st.ID, tr.Set, tr.Params, rec); err != nil {
		return err
	}
	return t.export(tr, rec)
}

func (t *Trial) train(ctx context.Context, st *store.Trial, tr *nn.Trainer, rec runner.Recorder, total int) error {
	tc := t.Cfg.Train
	peak := tc.PeakLR(t.Cfg.Data.BatchSize)
	sched := nn.Schedule{Base: peak, Min: math.Min(tc.MinLR, peak), Warmup: tc.WarmupSteps, Total: total}
	tr.Total = total // the method's scheduled values (EMA momenta) follow the step
	if tr.Step >= total {
		return nil
	}
	loader := data.NewLoader(t.Data, &t.Data.Train, t.trainLoaderConfig(), tr.Step)
	defer loader.Close()
	names := t.Model.MetricNames()
	var pending []store.Metric
	flush := func() error {
		err := rec.Metrics(pending)
		pending = pending[:0]
		return err
	}
	lost := func() bool { return errors.Is(context.Cause(ctx), runner.ErrLostLease) }
	checkpoint := func() error {
		if lost() {
			return context.Cause(ctx) // another worker owns the trial and its checkpoints now
		}
		if err := flush(); err != nil {
			return err
		}
		return t.commitCheckpoint(tr, rec) // written under this attempt's name, put in place under the lease
	}
	// Probes along training: each step of eval.at_steps / eval.every is checkpointed and evaluated before
	// training goes on, so a resumed trial finds every earlier step evaluated and the current one checkpointed.
	evalAt := map[int]bool{}
	for _, s := range t.Cfg.Eval.StepsToEvaluate(total) {
		evalAt[s] = true
	}
	evaluateAt := func(step int) error {
		if err := t.evaluate(ctx, st.ID, step, tr.Set, tr.Params, rec); err != nil {
			return fmt.Errorf("evaluating at step %d: %w", step, err)
		}
		return nil
	}
	if evalAt[tr.Step] {
		if err := evaluateAt(tr.Step); err != nil {
			return err
		}
	}
	start, lastPrint := time.Now(), time.Now()
	startStep := tr.Step
	bs := t.Cfg.Train.EffectiveBatch(t.Cfg.Data.BatchSize) // images per optimiser step, for images/s
	for tr.Step < total {
		if ctx.Err() != nil {
			if lost() {
				return context.Cause(ctx) // another worker owns the trial and its checkpoints now
			}
			if err := checkpoint(); err != nil {
				return fmt.Errorf("checkpoint on interrupt: %w", err)
			}
			return ctx.Err()
		}
		b := loader.Next()
		if b.Err != nil {
			return b.Err
		}
		lr := sched.At(tr.Step)
		var loss, gn float64
		var met []float64
		var err error
		if k := tc.AccumSteps; k > 1 {
			var micro [][]*tensors.Tensor
			if micro, err = t.microBatches(b, k); err != nil {
				return err
			}
			loss, gn, met, err = tr.AccumStep(lr, micro)
			for _, m := range micro {
				nn.Free(m...)
			}
		} else {
			var in []*tensors.Tensor
			if in, err = t.StepInputs(b); err != nil {
				return err
			}
			loss, gn, met, err = tr.TrainStep(lr, in...)
			nn.Free(in...)
		}
		if err != nil {
			flush()
			return err // NaN/Inf loss or an engine error: the trial fails with the reason
		}
		step := tr.Step
		rec.Progress(step)
		if step%tc.LogEvery == 0 || step == total || step == 1 {
			pending = append(pending, store.Metric{Step: step, Name: "loss", Value: loss}, store.Metric{Step: step, Name: "grad_norm", Value: gn},
				store.Metric{Step: step, Name: "lr", Value: lr})
			for i, n := range names {
				pending = append(pending, store.Metric{Step: step, Name: n, Value: met[i]})
			}
		}
		if (tc.CheckpointEvery > 0 && step%tc.CheckpointEvery == 0 || evalAt[step]) && step < total {
			if err := checkpoint(); err != nil {
				return err
			}
		}
		if evalAt[step] {
			if err := evaluateAt(step); err != nil {
				return err
			}
			start, startStep = time.Now(), step // images/s and the ETA count training only
		}
		if p := t.env.Progress; p != nil {
			p.Step(st.ID, t.env.displayName(st), step, total, loss, float64((step-startStep)*bs)/time.Since(start).Seconds())
		} else if time.Since(lastPrint) > 5*time.Second || step == total || step == startStep+1 {
			el := time.Since(start).Seconds()
			ips := float64((step-startStep)*bs) / el
			eta := time.Duration(float64(total-step)/math.Max(float64(step-startStep), 1)*el) * time.Second
			fmt.Fprintf(t.env.Log, "trial %d %s: step %d/%d loss %.4f %.0f img/s ETA %s\n", st.ID, t.env.displayName(st), step, total, loss, ips, eta.Round(time.Second))
			lastPrint = time.Now()
		}
	}
	return checkpoint()
}

func (t *Trial) export(tr *nn.Trainer, rec runner.Recorder) error {
	path := filepath.Join(t.Dir, "encoder.safetensors")
	if err := commitFile(rec, "encoder", path, func(tmp string) error { return ExportEncoder(t, tr.Set, tr.Params, tmp) }); err != nil {
		return err
	}
	th, ok := t.Model.Method.(method.Teacher)
	if !ok {
		return nil
	}
	// A method's EMA teacher is exported beside the encoder, under the same timm names.
	tp, kept, err := tr.Set.Alias(tr.Params, "encoder", th.TeacherPrefix())
	if err != nil {
		return err
	}
	path = filepath.Join(t.Dir, "teacher.safetensors")
	return commitFile(rec, "teacher", path, func(tmp string) error { return ExportEncoder(t, tr.Set, tp, tmp, kept...) })
}

// ExportEncoder writes the encoder's weights with timm's ViT names (plus the fixed pos_embed with its zero
// cls row), loadable into a BEiT/CAE-style PyTorch ViT.
func ExportEncoder(t *Trial, set *nn.ParamSet, params []*tensors.Tensor, path string, omit ...string) error {
	arr := nn.ToArrays(set, params, "encoder.")
	for _, name := range omit { // parameters the exported set does not have (a teacher's mask token)
		delete(arr, name)
	}
	v := t.Model.ViT
	pe := make([]float32, (v.NumPatches()+1)*v.Dim)
	for i, x := range nn.SinCos2D(v.Grid(), v.Dim) {
		pe[v.Dim+i] = float32(x)
	}
	arr["pos_embed"] = nn.Array{Shape: []int{1, v.NumPatches() + 1, v.Dim}, F32: pe}
	meta := map[string]string{"format": "timm-vit", "dim": fmt.Sprint(v.Dim), "depth": fmt.Sprint(v.Depth), "heads": fmt.Sprint(v.Heads),
		"patch_size": fmt.Sprint(v.PatchSize), "image_size": fmt.Sprint(v.ImageSize), "in_chans": fmt.Sprint(v.Channels),
		"mlp_ratio": fmt.Sprint(v.MLPRatio), "layer_scale": fmt.Sprint(v.LayerScale), "method": t.Model.Name}
	return nn.SaveSafetensors(path, arr, meta)
}

// Owner is what a trial's folder says about the worker that holds it (owner.json): on a shared runs
// folder, which host and process is writing its checkpoints.
type Owner struct {
	Owner   string  `json:"owner"` // host:pid/wN, as in trials.owner
	Host    string  `json:"host"`
	PID     int     `json:"pid"`
	Trial   int64   `json:"trial"`
	Attempt int     `json:"attempt"`
	Since   float64 `json:"since"` // Unix seconds
}

func writeOwner(dir string, st *store.Trial, owner string) error {
	host, _ := os.Hostname()
	b, err := json.MarshalIndent(Owner{Owner: owner, Host: host, PID: os.Getpid(), Trial: st.ID, Attempt: st.Attempts,
		Since: float64(time.Now().UnixNano()) / 1e9}, "", "  ")
	if err != nil {
		return err
	}
	return files.WriteAtomic(filepath.Join(dir, "owner.json"), func(w io.Writer) error {
		_, err := w.Write(append(b, '\n'))
		return err
	})
}

// Env is the environment the trial was prepared in.
func (t *Trial) Env() *Env { return t.env }
