package eval

import (
	"context"
	"errors"
	"fmt"
	"math"
	"math/rand/v2"
	"slices"
	"strings"
	"testing"

	"mimlab/nn/nntest"
)

// separable draws classes around well-separated random centres: linearly separable in practice.
func separable(seed uint64, n, d, c int, shuffle bool) (Features, Features) {
	r := rand.New(rand.NewPCG(seed, 0))
	centres := make([][]float64, c)
	for k := range centres {
		centres[k] = make([]float64, d)
		for j := range centres[k] {
			centres[k][j] = 4 * r.NormFloat64()
		}
	}
	mk := func(n int) Features {
		f := Features{X: make([]float32, n*d), N: n, D: d, Labels: make([]int, n)}
		for i := 0; i < n; i++ {
			k := i % c
			f.Labels[i] = k
			for j := 0; j < d; j++ {
				f.X[i*d+j] = float32(centres[k][j] + r.NormFloat64())
			}
		}
		if shuffle {
			r.Shuffle(n, func(a, b int) { f.Labels[a], f.Labels[b] = f.Labels[b], f.Labels[a] })
		}
		return f
	}
	return mk(n), mk(n / 2)
}

// tokensOf spreads each feature vector over T tokens (noise plus the vector in one random token), so the
// attentive probe must find it by attention.
func tokensOf(f Features, t int, seed uint64) Tokens {
	r := rand.New(rand.NewPCG(seed, 1))
	out := Tokens{X: make([]float32, f.N*t*f.D), N: f.N, T: t, D: f.D, Labels: f.Labels}
	for i := 0; i < f.N; i++ {
		for k := 0; k < t; k++ {
			for j := 0; j < f.D; j++ {
				out.X[(i*t+k)*f.D+j] = float32(0.3 * r.NormFloat64())
			}
		}
		k := r.IntN(t)
		for j := 0; j < f.D; j++ {
			out.X[(i*t+k)*f.D+j] += f.X[i*f.D+j]
		}
	}
	return out
}

func runAll(t *testing.T, train, test Features, seed uint64) map[string]float64 {
	t.Helper()
	lin, err := Linear(train, test, 1e-4, 200)
	if err != nil {
		t.Fatal(err)
	}
	knn, err := KNN(train, test, 20, 0.07)
	if err != nil {
		t.Fatal(err)
	}
	att, err := Attentive(context.Background(), nntest.Go(t), tokensOf(train, 5, seed), tokensOf(test, 5, seed+1),
		AttentiveConfig{Heads: 2, Epochs: 15, LR: 3e-3, Batch: 64, Optimizer: "adamw", Seed: seed})
	if err != nil {
		t.Fatal(err)
	}
	return map[string]float64{"linear": lin, "knn": knn, "attentive": att}
}

func TestProtocolsOnSeparableData(t *testing.T) {
	train, test := separable(1, 1200, 16, 4, false)
	acc := runAll(t, train, test, 3)
	t.Logf("separable: %v", acc)
	for p, a := range acc {
		if a < 0.99 {
			t.Errorf("%s: %.3f < 0.99 on separable data", p, a)
		}
	}
	// Same seed, same numbers.
	again := runAll(t, train, test, 3)
	for p := range acc {
		if acc[p] != again[p] {
			t.Errorf("%s: %.4f then %.4f with the same seed", p, acc[p], again[p])
		}
	}
}

func TestProtocolsOnShuffledLabelsStayNearChance(t *testing.T) {
	train, test := separable(2, 1200, 16, 4, true)
	acc := runAll(t, train, test, 5)
	t.Logf("shuffled labels: %v (chance 0.25)", acc)
	for p, a := range acc {
		if math.Abs(a-0.25) > 0.06 {
			t.Errorf("%s: %.3f on shuffled labels, chance is 0.25", p, a)
		}
	}
}

func TestSGDAttentive(t *testing.T) {
	train, test := separable(4, 600, 8, 3, false)
	a, err := Attentive(context.Background(), nntest.Go(t), tokensOf(train, 4, 1), tokensOf(test, 4, 2), AttentiveConfig{Heads: 2, Epochs: 15, LR: 0.05, Batch: 50, Optimizer: "sgd", Seed: 1})
	if err != nil {
		t.Fatal(err)
	}
	if a < 0.95 {
		t.Fatalf("SGD attentive probe: %.3f", a)
	}
}

func TestReadings(t *testing.T) {
	cases := []struct {
		name      string
		protocols []string
		feature   string
		labels    []int
		want      []string
	}{
		{"cls", []string{"linear", "knn", "attentive"}, "cls", []int{0}, []string{"linear", "knn", "attentive"}},
		{"mean keeps the plain names", []string{"linear"}, "mean", []int{0}, []string{"linear"}},
		{"both", []string{"linear", "attentive"}, "both", []int{0}, []string{"linear", "linear_mean", "attentive"}},
		{"finetune labels", []string{"finetune"}, "cls", []int{100, 0}, []string{"finetune_100", "finetune"}},
		{"finetune both", []string{"finetune"}, "both", []int{100}, []string{"finetune_100", "finetune_100_mean"}},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			cfg := DefaultConfig()
			cfg.Protocols, cfg.Feature, cfg.FTLabels = c.protocols, c.feature, c.labels
			if err := cfg.Validate(); err != nil {
				t.Fatal(err)
			}
			var got []string
			for _, r := range cfg.Readings() {
				got = append(got, r.Name)
				if r.Protocol == "attentive" && r.Feature != "" || r.Protocol != "attentive" && r.Feature != "cls" && r.Feature != "mean" {
					t.Errorf("%s: feature %q", r.Name, r.Feature)
				}
			}
			if strings.Join(got, " ") != strings.Join(c.want, " ") {
				t.Fatalf("readings %v, want %v", got, c.want)
			}
		})
	}
}

func TestEvalConfigRejects(t *testing.T) {
	cases := []struct {
		name string
		edit func(*Config)
		want string
	}{
		{"unknown protocol", func(c *Config) { c.Protocols = []string{"probe"} }, "finetune"},
		{"steps not increasing", func(c *Config) { c.AtSteps = []int{600, 600} }, "eval.at_steps"},
		{"step zero", func(c *Config) { c.AtSteps = []int{0} }, "eval.at_steps"},
		{"negative labels", func(c *Config) { c.FTLabels = []int{-1} }, "eval.finetune_labels"},
		{"repeated labels", func(c *Config) { c.FTLabels = []int{100, 100} }, "eval.finetune_labels"},
		{"no labels", func(c *Config) { c.Protocols, c.FTLabels = []string{"finetune"}, nil }, "eval.finetune_labels"},
		{"layer decay", func(c *Config) { c.FTLayerDecay = 0 }, "eval.finetune_layer_decay"},
		{"smoothing", func(c *Config) { c.FTLabelSmoothing = 1 }, "eval.finetune_label_smoothing"},
		{"drop path", func(c *Config) { c.FTDropPath = 1 }, "eval.finetune_drop_path"},
		{"feature", func(c *Config) { c.Feature = "max" }, "cls, mean, both"},
		{"every", func(c *Config) { c.Every = -1 }, "eval.every"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			cfg := DefaultConfig()
			c.edit(cfg)
			err := cfg.Validate()
			if err == nil || !strings.Contains(err.Error(), c.want) {
				t.Fatalf("error %v, want one naming %q", err, c.want)
			}
		})
	}
}

func TestStepsToEvaluate(t *testing.T) {
	cfg := DefaultConfig()
	cfg.AtSteps, cfg.Every = []int{5, 600, 2000}, 1000
	got := fmt.Sprint(cfg.StepsToEvaluate(2000)) // the final step is the final evaluation's
	if got != "[5 600 1000]" {
		t.Fatalf("steps %s, want [5 600 1000]", got)
	}
}

func TestSortReadings(t *testing.T) {
	got := SortReadings([]string{"finetune", "knn_mean", "finetune_1000_mean", "attentive", "linear_mean", "finetune_100", "linear", "tokenizer", "finetune_1000"})
	want := "linear linear_mean knn_mean attentive finetune_100 finetune_1000 finetune_1000_mean finetune tokenizer"
	if strings.Join(got, " ") != want {
		t.Fatalf("%v, want %s", got, want)
	}
}

// TestSoftmaxObjectiveGradient: the linear probe's gradient against central finite differences (float64),
// the same loss and gradient whatever the number of goroutines, and no stale cache when the point moves.
func TestSoftmaxObjectiveGradient(t *testing.T) {
	r := rand.New(rand.NewPCG(7, 0))
	n, d, c := 37, 5, 3
	x := make([]float64, n*d)
	labels := make([]int, n)
	for i := range x {
		x[i] = r.NormFloat64()
	}
	for i := range labels {
		labels[i] = r.IntN(c)
	}
	p := make([]float64, c*d+c)
	for i := range p {
		p[i] = 0.5 * r.NormFloat64()
	}
	o := newSoftmaxObjective(x, labels, n, d, c, 0.3)
	g := make([]float64, len(p))
	o.grad(g, p)
	const h = 1e-6
	for i := range p {
		q := append([]float64(nil), p...)
		q[i] += h
		up := newSoftmaxObjective(x, labels, n, d, c, 0.3).loss(q)
		q[i] -= 2 * h
		down := newSoftmaxObjective(x, labels, n, d, c, 0.3).loss(q)
		if fd := (up - down) / (2 * h); math.Abs(fd-g[i]) > 1e-7*math.Max(1, math.Abs(fd)) {
			t.Errorf("param %d: gradient %.10g, finite difference %.10g", i, g[i], fd)
		}
	}
	one := newSoftmaxObjective(x, labels, n, d, c, 0.3)
	one.workers = 1
	g1 := make([]float64, len(p))
	one.grad(g1, p)
	if one.loss(p) != o.loss(p) || !slices.Equal(g1, g) {
		t.Errorf("1 goroutine: loss %v, %d goroutines: %v (gradients equal: %v)", one.loss(p), o.workers, o.loss(p), slices.Equal(g1, g))
	}
	moved := append([]float64(nil), p...)
	moved[0] += 1
	if got, want := o.loss(moved), newSoftmaxObjective(x, labels, n, d, c, 0.3).loss(moved); got != want {
		t.Errorf("after moving the point: loss %v, fresh objective %v", got, want)
	}
}

// LinearProbe says whether L-BFGS converged: cut at 3 iterations it has not; with strong regularisation
// (a well-conditioned objective) and room to run it has, with a small gradient.
func TestLinearProbeReportsConvergence(t *testing.T) {
	train, test := separable(1, 600, 16, 4, false)
	tests := []struct {
		name      string
		l2        float64
		maxIter   int
		converged bool
	}{
		{"cut at the iteration limit", 1e-4, 3, false},
		{"well conditioned, room to converge", 1e-1, 500, true},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			fit, err := LinearProbe(train, test, tc.l2, tc.maxIter)
			if err != nil {
				t.Fatal(err)
			}
			if fit.Converged != tc.converged || fit.Iterations > tc.maxIter || fit.Iterations == 0 || fit.GradNorm <= 0 {
				t.Fatalf("%+v, want converged=%v within %d iterations", fit, tc.converged, tc.maxIter)
			}
			if tc.converged && fit.GradNorm > 1e-4 {
				t.Errorf("converged with gradient norm %g", fit.GradNorm)
			}
			if !tc.converged && fit.Status != "IterationLimit" {
				t.Errorf("status %q, want IterationLimit", fit.Status)
			}
			if top1, _ := Linear(train, test, tc.l2, tc.maxIter); top1 != fit.Top1 {
				t.Errorf("Linear %v, LinearProbe %v", top1, fit.Top1)
			}
		})
	}
}

// Features L-BFGS cannot start from (a NaN) are an error, not a chance-level accuracy.
func TestLinearProbeRejectsUnusableFeatures(t *testing.T) {
	train, test := separable(2, 200, 8, 4, false)
	train.X[3] = float32(math.NaN())
	if fit, err := LinearProbe(train, test, 1e-4, 50); err == nil {
		t.Fatalf("NaN features gave %+v, want an error", fit)
	}
}

// A teacher's readings always carry the _teacher suffix, whether it is read alone or beside the encoder.
func TestEncoderReadingsNameTheTeacher(t *testing.T) {
	for _, c := range []struct {
		encoder          string
		student, teacher []string
	}{
		{"encoder", []string{"linear", "knn"}, nil},
		{"teacher", nil, []string{"linear_teacher", "knn_teacher"}},
		{"both", []string{"linear", "knn"}, []string{"linear_teacher", "knn_teacher"}},
	} {
		cfg := DefaultConfig()
		cfg.Protocols, cfg.Encoder = []string{"linear", "knn"}, c.encoder
		got := cfg.EncoderReadings()
		names := func(rs []Reading) []string {
			var out []string
			for _, r := range rs {
				out = append(out, r.Name)
			}
			return out
		}
		if a, b := names(got["encoder"]), names(got["teacher"]); !slices.Equal(a, c.student) || !slices.Equal(b, c.teacher) {
			t.Errorf("eval.encoder = %s: encoder %v, teacher %v; want %v, %v", c.encoder, a, b, c.student, c.teacher)
		}
	}
}

// The linear and k-NN probes stop when their context is done (Ctrl-C, a lost lease) and say so, instead of
// running to the end: a cancelled context gives its error, a live one the reading.
func TestProbesStopWhenCancelled(t *testing.T) {
	train, test := separable(9, 600, 16, 4, true) // shuffled labels: L-BFGS runs to its limit
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if _, err := LinearProbeCtx(ctx, train, test, 1e-4, 100000); !errors.Is(err, context.Canceled) {
		t.Errorf("linear probe on a cancelled context: %v", err)
	}
	if _, err := KNNCtx(ctx, train, test, 20, 0.07); !errors.Is(err, context.Canceled) {
		t.Errorf("knn on a cancelled context: %v", err)
	}
	if _, err := KNNCtx(context.Background(), train, test, 20, 0.07); err != nil {
		t.Error(err)
	}
}
