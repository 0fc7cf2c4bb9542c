// Package eval holds the protocols that judge a frozen encoder by what it lets a classifier do:
//
//   - linear: features (cls after the final LayerNorm, or the mean of patch tokens) standardised with the
//     train split's statistics (BatchNorm without affine), then a softmax linear classifier fitted on the
//     train split to convergence by L-BFGS (gonum/optimize) with a small L2 penalty; top-1 on the test split.
//   - knn: cosine similarity on L2-normalised features, k nearest train samples vote with weight
//     exp(sim / T) (DINO's weighted k-NN, k = 20, T = 0.07); top-1 on the test split.
//   - attentive: CAE's attentive probe: one learned query, one cross-attention block over all output tokens
//     (LayerNorms on query, keys and values, no residual, no MLP), BatchNorm without affine, a linear
//     classifier; only these train (AdamW or SGD, epochs from the spec); BatchNorm uses the full train
//     split's statistics at test time.
//
// Everything here is seeded; the same features and seed give the same accuracy.
package eval

import (
	"cmp"
	"fmt"
	"math"
	"slices"
	"strconv"
	"strings"
)

// Features are N vectors of width D with labels.
type Features struct {
	X      []float32 // N*D
	N, D   int
	Labels []int
}

// Tokens are N sequences of T tokens of width D with labels (the attentive probe's input).
type Tokens struct {
	X       []float32 // N*T*D
	N, T, D int
	Labels  []int
}

// Config is the [eval] section.
type Config struct {
	Protocols      []string `toml:"protocols" allowed:"linear,knn,attentive,finetune"`
	Feature        string   `toml:"feature" allowed:"cls,mean,both"` // both: cls and mean readings of every protocol that pools
	Batch          int      `toml:"batch"`                           // feature extraction batch
	LinearL2       float64  `toml:"linear_l2"`
	LinearMaxIter  int      `toml:"linear_max_iter"`
	KNNK           int      `toml:"knn_k"`
	KNNTemperature float64  `toml:"knn_temperature"`
	AttEpochs      int      `toml:"attentive_epochs"`
	AttLR          float64  `toml:"attentive_lr"`
	AttBatch       int      `toml:"attentive_batch"`
	AttOptimizer   string   `toml:"attentive_optimizer"` // adamw or sgd (momentum 0.9, as the paper)
	AttWD          float64  `toml:"attentive_weight_decay"`
	Baselines      bool     `toml:"baselines"` // compute the raw-pixel and random-init reference rows
	// Encoder says which parameters the protocols read: the gradient-trained encoder, the EMA teacher of a
	// method that has one (I-JEPA, data2vec, MoCo v3 evaluate the teacher), or both. The teacher's readings are
	// always named with a "_teacher" suffix (knn_teacher, linear_mean_teacher).
	Encoder string `toml:"encoder" allowed:"encoder,teacher,both" doc:"the parameters the protocols read: encoder, the method's EMA teacher, or both"`

	// Probes along training: the protocols also run on the encoder at these steps of pretraining (and every
	// `every` steps), each stored with its step; the final evaluation runs as always.
	AtSteps []int `toml:"at_steps" doc:"pretraining steps at which the protocols also run"`
	Every   int   `toml:"every" doc:"also evaluate every N pretraining steps (0 = off)"`

	// Fine-tuning (protocol "finetune"): the encoder and a linear head trained end to end with labels, as
	// BEiT/CAE fine-tune: AdamW, layer-wise lr decay, drop path, warmup then cosine, label smoothing.
	FTLabels         []int   `toml:"finetune_labels" doc:"labelled training images, class-balanced (0 = all); one reading per entry"`
	FTEpochs         int     `toml:"finetune_epochs"`
	FTMinSteps       int     `toml:"finetune_min_steps" doc:"at least this many steps, however few labels"`
	FTBatch          int     `toml:"finetune_batch"`
	FTLR             float64 `toml:"finetune_lr"`
	FTMinLR          float64 `toml:"finetune_min_lr"`
	FTWarmupEpochs   float64 `toml:"finetune_warmup_epochs"`
	FTLayerDecay     float64 `toml:"finetune_layer_decay"`
	FTWeightDecay    float64 `toml:"finetune_weight_decay"`
	FTDropPath       float64 `toml:"finetune_drop_path"`
	FTLabelSmoothing float64 `toml:"finetune_label_smoothing"`
}

// Protocols lists the protocol names.
var Protocols = []string{"linear", "knn", "attentive", "finetune"}

// DefaultConfig is the [eval] default.
func DefaultConfig() *Config {
	return &Config{Protocols: []string{"linear", "knn", "attentive"}, Feature: "cls", Batch: 256, LinearL2: 1e-4, LinearMaxIter: 300,
		KNNK: 20, KNNTemperature: 0.07, AttEpochs: 10, AttLR: 1e-3, AttBatch: 128, AttOptimizer: "adamw", Baselines: true, Encoder: "encoder",
		FTLabels: []int{0}, FTEpochs: 30, FTMinSteps: 200, FTBatch: 64, FTLR: 1e-3, FTMinLR: 1e-6, FTWarmupEpochs: 3,
		FTLayerDecay: 0.65, FTWeightDecay: 0.05, FTDropPath: 0.1, FTLabelSmoothing: 0.1}
}

// Validate checks the section.
func (c *Config) Validate() error {
	for _, p := range c.Protocols {
		ok := false
		for _, q := range Protocols {
			ok = ok || p == q
		}
		if !ok {
			return fmt.Errorf("eval.protocols: unknown protocol %q; allowed: %s", p, strings.Join(Protocols, ", "))
		}
	}
	seen := map[int]bool{}
	for _, n := range c.FTLabels {
		if n < 0 || seen[n] {
			return fmt.Errorf("eval.finetune_labels = %v: each entry must be >= 0 (0 = all) and appear once", c.FTLabels)
		}
		seen[n] = true
	}
	for i, s := range c.AtSteps {
		if s < 1 || (i > 0 && s <= c.AtSteps[i-1]) {
			return fmt.Errorf("eval.at_steps = %v: steps must be >= 1 and increasing", c.AtSteps)
		}
	}
	switch {
	case c.Encoder != "encoder" && c.Encoder != "teacher" && c.Encoder != "both":
		return fmt.Errorf("eval.encoder = %q: allowed values are encoder, teacher, both", c.Encoder)
	case c.Feature != "cls" && c.Feature != "mean" && c.Feature != "both":
		return fmt.Errorf("eval.feature = %q: allowed values are cls, mean, both", c.Feature)
	case c.Batch < 1:
		return fmt.Errorf("eval.batch = %d: must be >= 1", c.Batch)
	case c.LinearL2 < 0:
		return fmt.Errorf("eval.linear_l2 = %v: must be >= 0", c.LinearL2)
	case c.LinearMaxIter < 1:
		return fmt.Errorf("eval.linear_max_iter = %d: must be >= 1", c.LinearMaxIter)
	case c.KNNK < 1:
		return fmt.Errorf("eval.knn_k = %d: must be >= 1", c.KNNK)
	case c.KNNTemperature <= 0:
		return fmt.Errorf("eval.knn_temperature = %v: must be > 0", c.KNNTemperature)
	case c.AttEpochs < 1 || c.AttBatch < 2 || c.AttLR <= 0:
		return fmt.Errorf("eval.attentive_epochs/attentive_batch/attentive_lr must be >= 1, >= 2, > 0")
	case c.AttOptimizer != "adamw" && c.AttOptimizer != "sgd":
		return fmt.Errorf("eval.attentive_optimizer = %q: allowed values are adamw, sgd", c.AttOptimizer)
	case c.Every < 0:
		return fmt.Errorf("eval.every = %d: must be >= 0 (0 = off)", c.Every)
	case c.FTEpochs < 1 || c.FTMinSteps < 0 || c.FTBatch < 2:
		return fmt.Errorf("eval.finetune_epochs/finetune_min_steps/finetune_batch must be >= 1, >= 0, >= 2")
	case c.FTLR <= 0 || c.FTLR > 10 || c.FTMinLR < 0 || c.FTMinLR > c.FTLR:
		return fmt.Errorf("eval.finetune_lr = %v, finetune_min_lr = %v: need 0 < finetune_lr <= 10 and 0 <= finetune_min_lr <= finetune_lr", c.FTLR, c.FTMinLR)
	case c.FTWarmupEpochs < 0:
		return fmt.Errorf("eval.finetune_warmup_epochs = %v: must be >= 0", c.FTWarmupEpochs)
	case c.FTLayerDecay <= 0 || c.FTLayerDecay > 1:
		return fmt.Errorf("eval.finetune_layer_decay = %v: must be in (0, 1] (1 = no decay)", c.FTLayerDecay)
	case c.FTWeightDecay < 0:
		return fmt.Errorf("eval.finetune_weight_decay = %v: must be >= 0", c.FTWeightDecay)
	case c.FTDropPath < 0 || c.FTDropPath >= 1:
		return fmt.Errorf("eval.finetune_drop_path = %v: must be in [0, 1)", c.FTDropPath)
	case c.FTLabelSmoothing < 0 || c.FTLabelSmoothing >= 1:
		return fmt.Errorf("eval.finetune_label_smoothing = %v: must be in [0, 1)", c.FTLabelSmoothing)
	case len(c.FTLabels) == 0 && slices.Contains(c.Protocols, "finetune"):
		return fmt.Errorf("eval.finetune_labels is empty: give at least one entry (0 = all labels)")
	}
	return nil
}

// Reading is one number the [eval] section asks for: a protocol on a feature (with a labelled-set size for
// fine-tuning), stored under Name.
type Reading struct {
	Protocol string
	Feature  string // cls or mean ("" for attentive, which reads every token)
	Labels   int    // finetune: labelled images (0 = all)
	Name     string // the evals row's protocol: "linear", "finetune_100", "knn_mean", ...
}

// TeacherSuffix names the readings of a method's EMA teacher (eval.encoder = "teacher" or "both").
const TeacherSuffix = "_teacher"

// EncoderReadings are the readings of each parameter set eval.encoder asks for: "encoder" and/or "teacher",
// each with the names its rows are stored under (the teacher's always with TeacherSuffix).
func (c *Config) EncoderReadings() map[string][]Reading {
	out := map[string][]Reading{}
	if c.Encoder != "teacher" {
		out["encoder"] = c.Readings()
	}
	if c.Encoder == "teacher" || c.Encoder == "both" {
		// Always suffixed, so a teacher's reading is never stored under a student's name: switching
		// eval.encoder on a finished trial reads what is missing instead of reporting the other's numbers.
		for _, r := range c.Readings() {
			r.Name += TeacherSuffix
			out["teacher"] = append(out["teacher"], r)
		}
	}
	return out
}

// Readings expands the protocols into the readings they give, in order: one per feature when feature =
// "both" (the mean reading named with a "_mean" suffix), one per finetune_labels entry ("finetune" for all
// labels, "finetune_N" for N).
func (c *Config) Readings() []Reading {
	feats := []string{c.Feature}
	if c.Feature == "both" {
		feats = []string{"cls", "mean"}
	}
	var out []Reading
	for _, p := range c.Protocols {
		if p == "attentive" {
			out = append(out, Reading{Protocol: p, Name: p})
			continue
		}
		labels := []int{0}
		if p == "finetune" {
			labels = c.FTLabels
		}
		for _, n := range labels {
			for _, f := range feats {
				name := p
				if n > 0 {
					name = fmt.Sprintf("%s_%d", p, n)
				}
				if c.Feature == "both" && f == "mean" {
					name += "_mean"
				}
				out = append(out, Reading{Protocol: p, Feature: f, Labels: n, Name: name})
			}
		}
	}
	return out
}

// SortReadings orders reading names for columns: by protocol (linear, knn, attentive, finetune, then others
// by name), then labelled-set size (fewest first, all labels last), then cls before mean.
func SortReadings(names []string) []string {
	rank := func(name string) (int, int, int) {
		base, mean := strings.CutSuffix(name, "_mean")
		proto, labels := base, 1<<30
		if p, n, ok := strings.Cut(base, "_"); ok {
			if x, err := strconv.Atoi(n); err == nil {
				proto, labels = p, x
			}
		}
		r := slices.Index(Protocols, proto)
		if r < 0 {
			r = len(Protocols)
		}
		m := 0
		if mean {
			m = 1
		}
		return r, labels, m
	}
	out := slices.Clone(names)
	slices.SortStableFunc(out, func(a, b string) int {
		a1, a2, a3 := rank(a)
		b1, b2, b3 := rank(b)
		if c := cmp.Compare(a1, b1); c != 0 {
			return c
		}
		if c := cmp.Compare(a2, b2); c != 0 {
			return c
		}
		if c := cmp.Compare(a3, b3); c != 0 {
			return c
		}
		return strings.Compare(a, b)
	})
	return out
}

// StepsToEvaluate are the pretraining steps below total at which the protocols run (at_steps and every),
// sorted; the final step is the final evaluation's.
func (c *Config) StepsToEvaluate(total int) []int {
	var out []int
	for _, s := range c.AtSteps {
		if s < total {
			out = append(out, s)
		}
	}
	if c.Every > 0 {
		for s := c.Every; s < total; s += c.Every {
			out = append(out, s)
		}
	}
	slices.Sort(out)
	return slices.Compact(out)
}

// Standardize returns (x - mean) / sqrt(var + 1e-6) with the train statistics (BatchNorm, no affine) for
// both splits.
func Standardize(train, test Features) (Features, Features) {
	mean := make([]float64, train.D)
	vr := make([]float64, train.D)
	for i := 0; i < train.N; i++ {
		for j := 0; j < train.D; j++ {
			mean[j] += float64(train.X[i*train.D+j])
		}
	}
	for j := range mean {
		mean[j] /= float64(train.N)
	}
	for i := 0; i < train.N; i++ {
		for j := 0; j < train.D; j++ {
			d := float64(train.X[i*train.D+j]) - mean[j]
			vr[j] += d * d
		}
	}
	apply := func(f Features) Features {
		out := f
		out.X = make([]float32, len(f.X))
		for i := 0; i < f.N; i++ {
			for j := 0; j < f.D; j++ {
				out.X[i*f.D+j] = float32((float64(f.X[i*f.D+j]) - mean[j]) / math.Sqrt(vr[j]/float64(train.N)+1e-6))
			}
		}
		return out
	}
	return apply(train), apply(test)
}

func numClasses(fs ...[]int) int {
	c := 0
	for _, ls := range fs {
		for _, l := range ls {
			if l+1 > c {
				c = l + 1
			}
		}
	}
	return c
}
