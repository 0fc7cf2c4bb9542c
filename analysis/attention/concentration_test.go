package attention

import (
	"math"
	"slices"
	"strings"
	"testing"
)

// The central block is the middle k x k, k = g/2: on MNIST's 7x7 grid rows and columns 2..4.
func TestCentralPatches(t *testing.T) {
	cases := []struct {
		g    int
		want []int
	}{
		{7, []int{16, 17, 18, 23, 24, 25, 30, 31, 32}},
		{4, []int{5, 6, 9, 10}},
		{3, []int{4}},
		{2, []int{0}},
	}
	for _, c := range cases {
		if got := CentralPatches(c.g); !slices.Equal(got, c.want) {
			t.Errorf("grid %d: %v, want %v", c.g, got, c.want)
		}
	}
	if n := len(CentralPatches(14)); n != 49 {
		t.Errorf("grid 14: %d central patches, want 49 (rows 3..9)", n)
	}
}

// Hand-made maps on a 7x7 grid: a uniform map puts 9/49 on the centre with entropy 1, a one-hot map on a
// central patch 1 with entropy 0, one on a corner 0 with entropy 0, a map spread evenly over the centre 1
// with entropy log 9 / log 49; an unnormalised map (the cls token's own share left out) gives the same as
// its normalised self.
func TestConcentrate(t *testing.T) {
	const g, n = 7, 49
	uniform := make([]float64, n)
	for i := range uniform {
		uniform[i] = 0.5 / n // half the mass on the cls token itself
	}
	onehot := func(j int) []float64 { m := make([]float64, n); m[j] = 0.7; return m }
	centre := make([]float64, n)
	for _, j := range CentralPatches(g) {
		centre[j] = 1.0 / 9
	}
	cases := []struct {
		name             string
		m                []float64
		central, entropy float64
	}{
		{"uniform", uniform, 9.0 / 49, 1},
		{"one-hot on the centre patch", onehot(24), 1, 0},
		{"one-hot on a central patch", onehot(16), 1, 0},
		{"one-hot on a corner", onehot(0), 0, 0},
		{"one-hot next to the block", onehot(15), 0, 0},
		{"even over the centre", centre, 1, math.Log(9) / math.Log(49)},
	}
	var maps [][]float64
	for _, c := range cases {
		maps = append(maps, c.m)
	}
	got, err := Concentrate(maps, g)
	if err != nil {
		t.Fatal(err)
	}
	for i, c := range cases {
		if math.Abs(got[i].Central-c.central) > 1e-12 || math.Abs(got[i].Entropy-c.entropy) > 1e-12 {
			t.Errorf("%s: central %v entropy %v, want %v and %v", c.name, got[i].Central, got[i].Entropy, c.central, c.entropy)
		}
	}
	s, err := Summarize([][]float64{uniform, onehot(24)}, g)
	if err != nil {
		t.Fatal(err)
	}
	wantC := (9.0/49 + 1) / 2
	if s.Central.N != 2 || math.Abs(s.Central.Mean-wantC) > 1e-12 || math.Abs(s.Central.Std-(1-9.0/49)/math.Sqrt2) > 1e-12 ||
		math.Abs(s.Entropy.Mean-0.5) > 1e-12 || math.Abs(s.Entropy.Std-1/math.Sqrt2) > 1e-12 {
		t.Errorf("summary of uniform and one-hot: %+v", s)
	}
}

// Maps that are not maps are errors naming the map and what was wanted.
func TestConcentrateRefuses(t *testing.T) {
	cases := []struct {
		maps [][]float64
		g    int
		want string
	}{
		{[][]float64{make([]float64, 48)}, 7, "map 0 has 48 entries, want 49"},
		{[][]float64{make([]float64, 49)}, 7, "map 0 puts no weight on any patch"},
		{[][]float64{{1, -1, 0, 0}}, 2, "map 0, patch 1: weight -1"},
		{[][]float64{{1, math.NaN(), 0, 0}}, 2, "patch 1: weight NaN"},
		{[][]float64{{1}}, 1, "1x1 grid"},
	}
	for _, c := range cases {
		if _, err := Concentrate(c.maps, c.g); err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("got %v, want %q", err, c.want)
		}
	}
}
