package eval

import (
	"math"
	"math/rand/v2"
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
	att, err := Attentive(nntest.Go(t), tokensOf(train, 5, seed), tokensOf(test, 5, seed+1),
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
	a, err := Attentive(nntest.Go(t), tokensOf(train, 4, 1), tokensOf(test, 4, 2), AttentiveConfig{Heads: 2, Epochs: 15, LR: 0.05, Batch: 50, Optimizer: "sgd", Seed: 1})
	if err != nil {
		t.Fatal(err)
	}
	if a < 0.95 {
		t.Fatalf("SGD attentive probe: %.3f", a)
	}
}
