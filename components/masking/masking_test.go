package masking

import (
	"math/rand/v2"
	"testing"
)

func count(m []bool) int {
	n := 0
	for _, b := range m {
		if b {
			n++
		}
	}
	return n
}

// Block masking returns exactly num_masked for 1,000 seeds on 7x7 and 14x14 grids (CAE's loop; BEiT's
// original would sometimes return fewer).
func TestBlockExactCount(t *testing.T) {
	cases := []struct {
		grid, n, minBlock int
	}{
		{7, 24, 4}, {7, 12, 4}, {7, 36, 4}, {7, 48, 16}, {14, 98, 16}, {14, 75, 16}, {14, 49, 16}, {14, 150, 16},
	}
	for _, c := range cases {
		b := Block{BlockConfig{Name: "block", NumMasked: c.n, MinBlock: c.minBlock, MinAspect: 0.3}}
		for seed := uint64(0); seed < 1000; seed++ {
			m := b.Mask(rand.New(rand.NewPCG(seed, 0)), c.grid)
			if len(m) != c.grid*c.grid || count(m) != c.n {
				t.Fatalf("grid %d, num_masked %d, seed %d: %d masked of %d", c.grid, c.n, seed, count(m), len(m))
			}
		}
	}
}

// Block masks are blocky: on 14x14 with 98 masked, most masked patches have a masked 4-neighbour, far more
// than a uniform draw gives. (Guards against a "block" that degenerates to random.)
func TestBlockIsBlockwise(t *testing.T) {
	neigh := func(m []bool, g int) float64 {
		withNeighbour, total := 0, 0
		for i, v := range m {
			if !v {
				continue
			}
			total++
			y, x := i/g, i%g
			for _, d := range [][2]int{{0, 1}, {1, 0}, {0, -1}, {-1, 0}} {
				yy, xx := y+d[0], x+d[1]
				if yy >= 0 && yy < g && xx >= 0 && xx < g && m[yy*g+xx] {
					withNeighbour++
					break
				}
			}
		}
		return float64(withNeighbour) / float64(total)
	}
	b := Block{BlockConfig{Name: "block", NumMasked: 60, MinBlock: 16, MinAspect: 0.3}}
	rnd := Random{60}
	var fb, fr float64
	for seed := uint64(0); seed < 200; seed++ {
		fb += neigh(b.Mask(rand.New(rand.NewPCG(seed, 1)), 14), 14)
		fr += neigh(rnd.Mask(rand.New(rand.NewPCG(seed, 1)), 14), 14)
	}
	fb, fr = fb/200, fr/200
	t.Logf("fraction of masked patches with a masked neighbour: block %.3f, random %.3f", fb, fr)
	if fb < 0.97 || fb-fr < 0.1 {
		t.Fatalf("block masking is not blockwise: %.3f vs random %.3f", fb, fr)
	}
}

func TestRandomExactAndSeeded(t *testing.T) {
	m := Random{20}
	a := m.Mask(rand.New(rand.NewPCG(3, 0)), 7)
	b := m.Mask(rand.New(rand.NewPCG(3, 0)), 7)
	if count(a) != 20 {
		t.Fatalf("%d masked", count(a))
	}
	for i := range a {
		if a[i] != b[i] {
			t.Fatal("same seed gave another mask")
		}
	}
	v, k := Indices(a)
	if len(v) != 29 || len(k) != 20 {
		t.Fatalf("indices %d/%d", len(v), len(k))
	}
	for i := 1; i < len(k); i++ {
		if k[i] <= k[i-1] {
			t.Fatal("masked indices not in row-major order")
		}
	}
}

func TestConfigErrors(t *testing.T) {
	cases := []struct {
		c    BlockConfig
		grid int
		want string
	}{
		{BlockConfig{Name: "block", NumMasked: 49, MinBlock: 4, MinAspect: 0.3}, 49, "masking.num_masked = 49: must be < 49 patches (1..48)"},
		{BlockConfig{Name: "block", NumMasked: 0, MinBlock: 4, MinAspect: 0.3}, 49, "masking.num_masked = 0: must be >= 1"},
		{BlockConfig{Name: "block", NumMasked: 10, MinBlock: 4, MinAspect: 2}, 49, "masking.min_aspect = 2: must be in (0, 1]"},
	}
	for _, c := range cases {
		err := c.c.Validate()
		if err == nil {
			err = CheckGrid(Block{c.c}, c.grid)
		}
		if err == nil || err.Error() != c.want {
			t.Errorf("%+v: got %v, want %q", c.c, err, c.want)
		}
	}
}
