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
	Seed            uint64  `toml:"seed"`
	CheckpointEvery int     `toml:"checkpoint_every"`
	LogEvery        int     `toml:"log_every"`
	Backend         string  `toml:"backend"` // auto, ort, go, xla (execution only: not part of the trial's identity)
	Device          string  `toml:"device"`  // cpu or cuda; --device wins (execution only)
}

// Validate checks the section.
func (c *TrainConfig) Validate() error {
	switch {
	case c.Epochs < 0 || c.Steps < 0 || (c.Epochs == 0 && c.Steps == 0):
		return fmt.Errorf("train.steps = %d, train.epochs = %d: one must be > 0", c.Steps, c.Epochs)
	case c.LR <= 0:
		return fmt.Errorf("train.lr = %v: must be > 0", c.LR)
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
	case c.CheckpointEvery < 0:
		return fmt.Errorf("train.checkpoint_every = %d: must be >= 0 (0 = only at the end and on interrupt)", c.CheckpointEvery)
	case c.LogEvery < 1:
		return fmt.Errorf("train.log_every = %d: must be >= 1", c.LogEvery)
	case !slices.Contains(nn.Backends, c.Backend):
		return fmt.Errorf("train.backend = %q: allowed values are %s", c.Backend, strings.Join(nn.Backends, ", "))
	case c.Device != "cpu" && c.Device != "cuda":
		return fmt.Errorf("train.device = %q: allowed values are cpu, cuda", c.Device)
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
func (f fixed) New(impl string) (registry.Config, error) {
	if impl != "" {
		return nil, fmt.Errorf("%s has no implementations to name (remove %s.name)", f.name, f.name)
	}
	return f.fn(), nil
}

// Sections are every section a spec may hold, with their defaults.
func Sections() []spec.Section {
	return []spec.Section{
		data.Registry.WithDefault("mnist"),
		masking.Registry.WithDefault("block"),
		targets.Registry.WithDefault("pixel"),
		encoder.Registry.WithDefault("vit"),
		regressor.Registry.WithDefault("cae"),
		decoder.Registry.WithDefault("transformer"),
		method.Registry.WithDefault("cae"),
		fixed{"train", func() registry.Config {
			return &TrainConfig{Epochs: 0, Steps: 300, LR: 1.5e-3, MinLR: 1e-5, WeightDecay: 0.05, WarmupSteps: 20, Clip: 3,
				Beta1: 0.9, Beta2: 0.999, CheckpointEvery: 100, LogEvery: 10, Backend: "auto", Device: "cpu"}
		}},
		fixed{"eval", func() registry.Config { return eval.DefaultConfig() }},
	}
}

// Configs are a resolved spec's typed sections.
type Configs struct {
	Data      *data.Config
	Masking   *masking.Config
	Targets   *targets.Config
	Encoder   *encoder.Config
	Regressor *regressor.Config
	Decoder   *decoder.Config
	Method    *method.Config
	Train     *TrainConfig
	Eval      *eval.Config
}

// Typed extracts the sections of a resolved spec.
func Typed(res *spec.Resolved) Configs {
	s := res.Sections
	return Configs{
		Data: s["data"].(*data.Config), Masking: s["masking"].(*masking.Config), Targets: s["targets"].(*targets.Config),
		Encoder: s["encoder"].(*encoder.Config), Regressor: s["regressor"].(*regressor.Config), Decoder: s["decoder"].(*decoder.Config),
		Method: s["method"].(*method.Config), Train: s["train"].(*TrainConfig), Eval: s["eval"].(*eval.Config),
	}
}

// CheckCross validates what no single section can: masking against the patch grid and the method's
// combination of components. It needs no data, so `sweep plan` runs it.
func CheckCross(res *spec.Resolved) error {
	c := Typed(res)
	g := c.Data.ImageSize / c.Data.PatchSize
	if c.Method.Name != "supervised" {
		if err := c.Masking.CheckGrid(g * g); err != nil {
			return &spec.Error{File: res.File, Msg: err.Error()}
		}
	}
	m, err := assemble(c, 1, 10, nil)
	if err != nil {
		return &spec.Error{File: res.File, Msg: err.Error()}
	}
	if err := m.Check(); err != nil {
		return &spec.Error{File: res.File, Msg: err.Error()}
	}
	return nil
}

// assemble builds the model's components; target may be nil (plan time: a pixel stand-in is used so the
// combination can be checked without preparing a tokenizer).
func assemble(c Configs, channels, classes int, target targets.Target) (*method.Model, error) {
	enc, err := encoder.Registry.Build(c.Encoder.Name, c.Encoder)
	if err != nil {
		return nil, err
	}
	reg, err := regressor.Registry.Build(c.Regressor.Name, c.Regressor)
	if err != nil {
		return nil, err
	}
	dec, err := decoder.Registry.Build(c.Decoder.Name, c.Decoder)
	if err != nil {
		return nil, err
	}
	meth, err := method.Registry.Build(c.Method.Name, c.Method)
	if err != nil {
		return nil, err
	}
	if c.Method.Name == "mae" && c.Targets.Name != "pixel" {
		return nil, fmt.Errorf("method.name = \"mae\": targets.name = %q; allowed: pixel", c.Targets.Name)
	}
	if target == nil {
		target = targets.Pixel{PatchDim: channels * c.Data.PatchSize * c.Data.PatchSize}
	}
	if c.Method.Name == "supervised" {
		target = nil
	}
	return &method.Model{Method: meth, ViT: enc.ViT(c.Data.ImageSize, c.Data.PatchSize, channels), Encoder: enc, Regressor: reg,
		Decoder: dec, Target: target, NumMasked: c.Masking.NumMasked, Classes: classes}, nil
}
