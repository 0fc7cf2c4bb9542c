// Package experiment runs one trial of a resolved spec: it loads the data, assembles the model from the
// registered components, trains it with resumable atomic checkpoints, evaluates the frozen encoder with the
// [eval] protocols beside the raw-pixel and random-init reference rows, and exports the encoder. It is the
// only place that knows both the framework (spec, store, runner) and the components.
package experiment

import (
	"fmt"
	"slices"
	"strings"

	"mimlab/components/decoder"
	"mimlab/components/encoder"
	"mimlab/components/masking"
	"mimlab/components/method"
	"mimlab/components/regressor"
	"mimlab/components/targets"
	"mimlab/data"
	"mimlab/eval"
	"mimlab/framework/registry"
	"mimlab/framework/spec"
	"mimlab/nn"
)

// TrainConfig is the [train] section.
type TrainConfig struct {
	Epochs          int     `toml:"epochs"`
	Steps           int     `toml:"steps"` // overrides epochs when > 0
	LR              float64 `toml:"lr"`
	MinLR           float64 `toml:"min_lr"`
	WeightDecay     float64 `toml:"weight_decay"`
	WarmupSteps     int     `toml:"warmup_steps"`
	Clip            float64 `toml:"clip"`
	Beta1           float64 `toml:"beta1"`
	Beta2           float64 `toml:"beta2"`
	Seed            uint64  `toml:"seed" identity:"seed"` // spec.SeedKey: seeds of one configuration differ only here
	CheckpointEvery int     `toml:"checkpoint_every"`
	LogEvery        int     `toml:"log_every"`
	Backend         string  `toml:"backend" exec:"true" allowed:"auto,ort,go,xla" doc:"what executes the graphs"` // execution only: not part of the trial's identity
	Device          string  `toml:"device" exec:"true" allowed:"cpu,cuda" doc:"--device wins"`                    // execution only
	// Precision is part of the identity: bf16 changes the numbers (nn/precision.go).
	Precision string `toml:"precision" allowed:"fp32,bf16" doc:"matrix products and attention in bf16, the rest float32 (AMP); bf16 runs on the go and xla backends"`
	// Gradient accumulation: one optimiser step from accum_steps micro-batches of data.batch_size.
	AccumSteps int    `toml:"accum_steps" doc:"micro-batches of data.batch_size per optimiser step (gradient accumulation); the effective batch is batch_size x accum_steps"`
	LRScaling  string `toml:"lr_scaling" allowed:"none,linear" doc:"linear: the learning rate is train.lr x effective batch / 256 (MAE/CAE's rule, train.lr the base lr); none: train.lr as it is"`
}

// EffectiveBatch is the images of one optimiser step: batch x accum_steps.
func (c *TrainConfig) EffectiveBatch(batch int) int { return batch * max(c.AccumSteps, 1) }

// PeakLR is the learning rate after warmup: train.lr, scaled by the effective batch / 256 under lr_scaling =
// "linear".
func (c *TrainConfig) PeakLR(batch int) float64 {
	if c.LRScaling == "linear" {
		return c.LR * float64(c.EffectiveBatch(batch)) / 256
	}
	return c.LR
}

// MaxSteps bounds a trial's training steps (train.steps, or epochs x batches).
const MaxSteps = 1_000_000_000

// Validate checks the section.
func (c *TrainConfig) Validate() error {
	switch {
	case c.Epochs < 0 || c.Steps < 0 || (c.Epochs == 0 && c.Steps == 0):
		return fmt.Errorf("train.steps = %d, train.epochs = %d: one must be > 0", c.Steps, c.Epochs)
	case c.Steps > MaxSteps:
		return fmt.Errorf("train.steps = %d: at most %d", c.Steps, MaxSteps)
	case c.Epochs > 1_000_000:
		return fmt.Errorf("train.epochs = %d: at most 1000000", c.Epochs)
	case c.LR <= 0 || c.LR > 10:
		return fmt.Errorf("train.lr = %v: must be in (0, 10]", c.LR)
	case c.MinLR < 0 || c.MinLR > c.LR:
		return fmt.Errorf("train.min_lr = %v: must be in [0, lr]", c.MinLR)
	case c.WeightDecay < 0:
		return fmt.Errorf("train.weight_decay = %v: must be >= 0", c.WeightDecay)
	case c.WarmupSteps < 0:
		return fmt.Errorf("train.warmup_steps = %d: must be >= 0", c.WarmupSteps)
	case c.Clip < 0:
		return fmt.Errorf("train.clip = %v: must be >= 0 (0 = no clipping)", c.Clip)
	case c.Beta1 < 0 || c.Beta1 >= 1 || c.Beta2 < 0 || c.Beta2 >= 1:
		return fmt.Errorf("train.beta1/beta2 must be in [0, 1)")
	case c.WarmupSteps > MaxSteps:
		return fmt.Errorf("train.warmup_steps = %d: at most %d", c.WarmupSteps, MaxSteps)
	case c.CheckpointEvery < 0:
		return fmt.Errorf("train.checkpoint_every = %d: must be >= 0 (0 = only at the end and on interrupt)", c.CheckpointEvery)
	case c.LogEvery < 1:
		return fmt.Errorf("train.log_every = %d: must be >= 1", c.LogEvery)
	case !slices.Contains(nn.Backends, c.Backend):
		return fmt.Errorf("train.backend = %q: allowed values are %s", c.Backend, strings.Join(nn.Backends, ", "))
	case c.Device != "cpu" && c.Device != "cuda":
		return fmt.Errorf("train.device = %q: allowed values are cpu, cuda", c.Device)
	case c.AccumSteps < 1 || c.AccumSteps > 65536:
		return fmt.Errorf("train.accum_steps = %d: must be in [1, 65536] (1 = no accumulation)", c.AccumSteps)
	case c.LRScaling != "none" && c.LRScaling != "linear":
		return fmt.Errorf("train.lr_scaling = %q: allowed values are none, linear", c.LRScaling)
	case !slices.Contains(nn.Precisions, c.Precision):
		return fmt.Errorf("train.precision = %q: allowed values are %s", c.Precision, strings.Join(nn.Precisions, ", "))
	case c.Precision != "fp32" && c.Device != "cuda" && (c.Backend == "ort" || c.Backend == "onnx"):
		return nn.CheckPrecision(c.Backend, nn.Precision(c.Precision))
	}
	return nil
}

// fixed is a section with one config type and no implementations to choose from.
type fixed struct {
	name string
	fn   func() registry.Config
}

func (f fixed) Name() string    { return f.name }
func (f fixed) Default() string { return "" }
func (f fixed) Names() []string { return nil }
func (f fixed) New(impl string) (registry.Config, error) {
	if impl != "" {
		return nil, fmt.Errorf("%s has no implementations to name (remove %s.name)", f.name, f.name)
	}
	return f.fn(), nil
}

// Kind is a component kind as `sweep list` and the README tables see it.
type Kind interface {
	spec.Section
	Doc(name string) string
}

// Kinds are the component kinds, in spec order; each implementation says at registration whether it is its
// kind's default (registry.Entry.Default), so nothing here writes to a registry.
func Kinds() []Kind {
	return []Kind{
		data.Registry,
		masking.Registry,
		targets.Registry,
		encoder.Registry,
		regressor.Registry,
		decoder.Registry,
		method.Registry,
	}
}

// Fixed are the sections with one config type: [train] and [eval].
func Fixed() []spec.Section {
	return []spec.Section{
		fixed{"train", func() registry.Config {
			return &TrainConfig{Epochs: 0, Steps: 300, LR: 1.5e-3, MinLR: 1e-5, WeightDecay: 0.05, WarmupSteps: 20, Clip: 3,
				Beta1: 0.9, Beta2: 0.999, CheckpointEvery: 100, LogEvery: 10, Backend: "auto", Device: "cpu", Precision: "fp32", AccumSteps: 1, LRScaling: "none"}
		}},
		fixed{"eval", func() registry.Config { return eval.DefaultConfig() }},
	}
}

// Sections are every section a spec may hold, with their defaults.
func Sections() []spec.Section {
	var out []spec.Section
	for _, k := range Kinds() {
		out = append(out, k)
	}
	return append(out, Fixed()...)
}

// Configs are a resolved spec's sections: the fixed ones typed, the components by kind.
type Configs struct {
	Data  *data.Config
	Train *TrainConfig
	Eval  *eval.Config
	res   *spec.Resolved
}

// Typed extracts the sections of a resolved spec.
func Typed(res *spec.Resolved) Configs {
	s := res.Sections
	return Configs{Data: s["data"].(data.Source).Data(), Train: s["train"].(*TrainConfig), Eval: s["eval"].(*eval.Config), res: res}
}

// Impl is the implementation a resolved spec chose for a kind (its name key).
func Impl(res *spec.Resolved, kind string) string {
	n, _ := spec.Values(res.Sections[kind], false)["name"].(string)
	return n
}

// Impl is the implementation chosen for a kind.
func (c Configs) Impl(kind string) string { return Impl(c.res, kind) }

func build[T any](k interface {
	Build(string, registry.Config) (T, error)
}, c Configs, kind string) (T, error) {
	return k.Build(c.Impl(kind), c.res.Sections[kind])
}

// CheckCross validates what no single section can: masking against the patch grid, every head count against
// its width, and the method's combination of components. It needs no data, so `sweep plan` runs it. Errors
// name where each involved key was set.
func CheckCross(res *spec.Resolved) error {
	c := Typed(res)
	wrap := func(err error) error { return &spec.Error{File: res.File, Msg: err.Error()} }
	if err := checkHeads(res); err != nil {
		return wrap(err)
	}
	tf, err := build(targets.Registry, c, "targets")
	if err != nil {
		return wrap(err)
	}
	m, err := assemble(c, 1, 10, targets.Standin(tf, c.Data.PatchSize*c.Data.PatchSize))
	if err != nil {
		return wrap(err)
	}
	if err := m.Check(); err != nil {
		return wrap(err)
	}
	if bc, ok := m.Method.(method.BatchCoupled); ok && c.Train.AccumSteps > 1 {
		return wrap(fmt.Errorf("train.accum_steps = %d (at %s): method.name = %q cannot accumulate gradients: %s, so micro-batches would not give the step of one large batch; allowed: 1",
			c.Train.AccumSteps, res.Where("train.accum_steps"), m.Name, bc.BatchCoupled()))
	}
	if c.Eval.Encoder != "encoder" {
		if _, ok := m.Method.(method.Teacher); !ok {
			return wrap(fmt.Errorf("eval.encoder = %q (at %s): method.name = %q has no EMA teacher; allowed: encoder", c.Eval.Encoder, res.Where("eval.encoder"), m.Name))
		}
	}
	if m.Method.Needs().TwoViews && len(c.Data.Augment) == 0 {
		// Two views of an unaugmented image are the image twice: a contrastive loss between them learns nothing.
		return wrap(fmt.Errorf("method.name = %q compares two augmented views of each image: data.augment is empty (at %s); allowed: %s",
			m.Name, res.Where("data.augment"), strings.Join(data.Augmentations, ", ")))
	}
	if m.Method.Needs().Mask {
		strat, err := build(masking.Registry, c, "masking")
		if err != nil {
			return wrap(err)
		}
		g := c.Data.ImageSize / c.Data.PatchSize
		if err := masking.CheckGrid(strat, g*g); err != nil {
			return wrap(fmt.Errorf("%w (set at %s; data.image_size = %d at %s, data.patch_size = %d at %s)", err,
				res.Where("masking.num_masked"), c.Data.ImageSize, res.Where("data.image_size"), c.Data.PatchSize, res.Where("data.patch_size")))
		}
	}
	return nil
}

// checkHeads: the encoder's width must divide by its heads, and by the regressor's and decoder's (0 = the
// encoder's).
func checkHeads(res *spec.Resolved) error {
	enc := spec.Values(res.Sections["encoder"], false)
	dim, _ := enc["dim"].(int64)
	heads, _ := enc["heads"].(int64)
	if heads > 0 && dim%heads != 0 {
		return fmt.Errorf("encoder.heads = %d (at %s): must divide encoder.dim = %d (at %s)", heads, res.Where("encoder.heads"), dim, res.Where("encoder.dim"))
	}
	for _, kind := range []string{"regressor", "decoder"} {
		h, ok := spec.Values(res.Sections[kind], false)["heads"].(int64)
		if ok && h > 0 && dim%h != 0 {
			return fmt.Errorf("%s.heads = %d (at %s): must divide encoder.dim = %d (at %s); 0 = the encoder's heads", kind, h, res.Where(kind+".heads"), dim, res.Where("encoder.dim"))
		}
	}
	return nil
}

// assemble builds the model's components around a prepared target (a stand-in at plan time).
func assemble(c Configs, channels, classes int, target targets.Target) (*method.Model, error) {
	enc, err := build(encoder.Registry, c, "encoder")
	if err != nil {
		return nil, err
	}
	reg, err := build(regressor.Registry, c, "regressor")
	if err != nil {
		return nil, err
	}
	dec, err := build(decoder.Registry, c, "decoder")
	if err != nil {
		return nil, err
	}
	meth, err := build(method.Registry, c, "method")
	if err != nil {
		return nil, err
	}
	numMasked := 0
	if meth.Needs().Mask {
		strat, err := build(masking.Registry, c, "masking")
		if err != nil {
			return nil, err
		}
		numMasked = strat.Count()
	}
	if !meth.Needs().Target {
		target = nil
	}
	return &method.Model{Method: meth, Name: c.Impl("method"), ViT: enc.ViT(c.Data.ImageSize, c.Data.PatchSize, channels), Encoder: enc,
		Regressor: reg, Decoder: dec, Target: target, NumMasked: numMasked, Classes: classes}, nil
}
