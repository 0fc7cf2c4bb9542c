package attention

import (
	"fmt"
	"math"
)

// The paper's Fig. 6 claims that CAE's cls token attends to the object as a whole rather than to a few
// patches. Concentrate turns that picture into two numbers per image, computed from a cls-to-patch map (the
// last layer's, averaged over heads: ClsMaps), renormalised over the patches (the cls token's attention to
// itself is left out):
//
//   - the central share: the attention mass on the central patches, those of the middle k x k block of the
//     g x g grid, k = g/2 (integer division), rows and columns s..s+k-1 with s = (g-k)/2 (integer division).
//     On a 7x7 grid (28-pixel images, 4-pixel patches) that is rows and columns 2..4: 9 of 49 patches. On a
//     14x14 grid rows and columns 3..9 (49 of 196). Where g-k is odd (g = 2, 6, 10, ...) the block lies half a
//     patch towards the top left. MNIST's digits are centred, so the central share is the share on the
//     object.
//   - the normalised entropy: -sum p log p / log N over the N patches, 1 for a uniform map, 0 for a map on
//     one patch.

// CentralPatches are the patch indices (row-major) of the central block of a g x g grid, as defined above.
func CentralPatches(g int) []int {
	k := g / 2
	s := (g - k) / 2
	out := make([]int, 0, k*k)
	for r := s; r < s+k; r++ {
		for c := s; c < s+k; c++ {
			out = append(out, r*g+c)
		}
	}
	return out
}

// Concentration describes one attention map.
type Concentration struct {
	Central float64 // share of the mass on CentralPatches
	Entropy float64 // entropy / log N
}

// Concentrate describes each map of maps (each [g*g], non-negative, not all zero).
func Concentrate(maps [][]float64, g int) ([]Concentration, error) {
	n := g * g
	if g < 2 {
		return nil, fmt.Errorf("attention: a %dx%d grid has no centre to speak of", g, g)
	}
	central := CentralPatches(g)
	out := make([]Concentration, len(maps))
	for i, m := range maps {
		if len(m) != n {
			return nil, fmt.Errorf("attention: map %d has %d entries, want %d for a %dx%d grid", i, len(m), n, g, g)
		}
		sum := 0.0
		for j, v := range m {
			if !(v >= 0) || math.IsInf(v, 0) {
				return nil, fmt.Errorf("attention: map %d, patch %d: weight %v, want finite and >= 0", i, j, v)
			}
			sum += v
		}
		if sum == 0 {
			return nil, fmt.Errorf("attention: map %d puts no weight on any patch", i)
		}
		c := 0.0
		for _, j := range central {
			c += m[j] / sum
		}
		h := 0.0
		for _, v := range m {
			if p := v / sum; p > 0 {
				h -= p * math.Log(p)
			}
		}
		out[i] = Concentration{Central: c, Entropy: h / math.Log(float64(n))}
	}
	return out, nil
}

// Spread is a mean and the sample standard deviation (n-1; 0 for one value) of N values.
type Spread struct {
	Mean, Std float64
	N         int
}

// SpreadOf summarises values.
func SpreadOf(v []float64) Spread {
	if len(v) == 0 {
		return Spread{}
	}
	m := 0.0
	for _, x := range v {
		m += x
	}
	m /= float64(len(v))
	s := 0.0
	if len(v) > 1 {
		for _, x := range v {
			s += (x - m) * (x - m)
		}
		s = math.Sqrt(s / float64(len(v)-1))
	}
	return Spread{Mean: m, Std: s, N: len(v)}
}

// ConcentrationSummary is the mean and spread of Concentrate's two numbers over images.
type ConcentrationSummary struct {
	Central, Entropy Spread
}

// Summarize is Concentrate's numbers over the images of maps: mean and standard deviation of each.
func Summarize(maps [][]float64, g int) (ConcentrationSummary, error) {
	cs, err := Concentrate(maps, g)
	if err != nil {
		return ConcentrationSummary{}, err
	}
	c, h := make([]float64, len(cs)), make([]float64, len(cs))
	for i, x := range cs {
		c[i], h[i] = x.Central, x.Entropy
	}
	return ConcentrationSummary{Central: SpreadOf(c), Entropy: SpreadOf(h)}, nil
}
