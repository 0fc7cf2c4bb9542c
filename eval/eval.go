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
	"fmt"
	"math"
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
	Protocols      []string `toml:"protocols"` // linear, knn, attentive
	Feature        string   `toml:"feature"`   // cls or mean
	Batch          int      `toml:"batch"`     // feature extraction batch
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
}

// Protocols lists the protocol names.
var Protocols = []string{"linear", "knn", "attentive"}

// DefaultConfig is the [eval] default.
func DefaultConfig() *Config {
	return &Config{Protocols: []string{"linear", "knn", "attentive"}, Feature: "cls", Batch: 256, LinearL2: 1e-4, LinearMaxIter: 300,
		KNNK: 20, KNNTemperature: 0.07, AttEpochs: 10, AttLR: 1e-3, AttBatch: 128, AttOptimizer: "adamw", Baselines: true}
}

// Validate checks the section.
func (c *Config) Validate() error {
	for _, p := range c.Protocols {
		ok := false
		for _, q := range Protocols {
			ok = ok || p == q
		}
		if !ok {
			return fmt.Errorf("eval.protocols: unknown protocol %q; allowed: linear, knn, attentive", p)
		}
	}
	switch {
	case c.Feature != "cls" && c.Feature != "mean":
		return fmt.Errorf("eval.feature = %q: allowed values are cls, mean", c.Feature)
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
	}
	return nil
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
