package tsne

import (
	"math/rand/v2"
	"testing"
)

func clusters(seed uint64, n, d, c int, spread float64) ([]float64, []int) {
	r := rand.New(rand.NewPCG(seed, 0))
	centres := make([][]float64, c)
	for k := range centres {
		centres[k] = make([]float64, d)
		for j := range centres[k] {
			centres[k][j] = spread * r.NormFloat64()
		}
	}
	x := make([]float64, n*d)
	lab := make([]int, n)
	for i := 0; i < n; i++ {
		lab[i] = i % c
		for j := 0; j < d; j++ {
			x[i*d+j] = centres[lab[i]][j] + r.NormFloat64()
		}
	}
	return x, lab
}

// On well-separated Gaussian clusters the map keeps them apart, for both the exact and the Barnes-Hut
// gradient, and the two agree in trustworthiness within 0.02.
func TestClustersStayApartAndBHMatchesExact(t *testing.T) {
	const n, d = 240, 20
	x, lab := clusters(1, n, d, 4, 6)
	cases := []struct {
		name  string
		theta float64
	}{{"exact", 0}, {"barnes-hut", 0.5}}
	tw := map[string]float64{}
	for _, c := range cases {
		cfg := Default()
		cfg.Theta, cfg.Seed = c.theta, 3
		y, err := Embed(x, n, d, cfg)
		if err != nil {
			t.Fatal(err)
		}
		acc := KNNAccuracy(y, lab, 5)
		tw[c.name] = Trustworthiness(x, d, y, 2, n, 5)
		t.Logf("%s: 2-D 5-NN accuracy %.3f, trustworthiness %.4f", c.name, acc, tw[c.name])
		if acc < 0.99 {
			t.Errorf("%s: clusters mixed in the map (5-NN accuracy %.3f)", c.name, acc)
		}
	}
	if diff := tw["exact"] - tw["barnes-hut"]; diff > 0.02 || diff < -0.02 {
		t.Errorf("Barnes-Hut trustworthiness %.4f vs exact %.4f", tw["barnes-hut"], tw["exact"])
	}
}

func TestSeeded(t *testing.T) {
	x, _ := clusters(2, 60, 5, 3, 5)
	cfg := Default()
	cfg.Iterations, cfg.PCAInit = 200, false
	a, _ := Embed(x, 60, 5, cfg)
	b, _ := Embed(x, 60, 5, cfg)
	for i := range a {
		if a[i] != b[i] {
			t.Fatal("same seed, different embedding")
		}
	}
}

func TestTrustworthinessOfIdentity(t *testing.T) {
	x, _ := clusters(3, 50, 2, 2, 3)
	if tw := Trustworthiness(x, 2, x, 2, 50, 5); tw != 1 {
		t.Fatalf("trustworthiness of the identity map = %v", tw)
	}
}
