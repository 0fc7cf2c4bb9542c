// Package masking holds the masking strategies a spec can name under [masking]: block (BEiT's block-wise
// masking with CAE's exact-count loop, cae-facts 2.1) and random (a uniform subset). Every strategy returns
// exactly num_masked patches, so every sample of a batch has the same count (the static shapes the engine
// and CAE's gathers need).
package masking

import (
	"fmt"
	"math"
	"math/rand/v2"

	"mimlab/framework/registry"
)

// Strategy draws one mask over a grid x grid patch grid: true = masked, row-major.
type Strategy interface {
	Mask(r *rand.Rand, grid int) []bool
}

// Config is the [masking] section.
type Config struct {
	Name      string  `toml:"name"`
	NumMasked int     `toml:"num_masked"`
	MinBlock  int     `toml:"min_block"`  // block: smallest block area (BEiT/CAE: 16 on 14x14)
	MinAspect float64 `toml:"min_aspect"` // block: aspect ratio range [min_aspect, max_aspect]
	MaxAspect float64 `toml:"max_aspect"` // 0 = 1/min_aspect
}

// Validate checks the values that do not depend on the grid; CheckGrid checks the rest.
func (c *Config) Validate() error {
	switch {
	case c.NumMasked <= 0:
		return fmt.Errorf("masking.num_masked = %d: must be >= 1", c.NumMasked)
	case c.Name == "block" && c.MinBlock < 1:
		return fmt.Errorf("masking.min_block = %d: must be >= 1", c.MinBlock)
	case c.Name == "block" && (c.MinAspect <= 0 || c.MinAspect > 1):
		return fmt.Errorf("masking.min_aspect = %v: must be in (0, 1]", c.MinAspect)
	case c.Name == "block" && c.MaxAspect != 0 && c.MaxAspect < c.MinAspect:
		return fmt.Errorf("masking.max_aspect = %v: must be >= min_aspect %v", c.MaxAspect, c.MinAspect)
	}
	return nil
}

// CheckGrid checks num_masked against the number of patches.
func (c *Config) CheckGrid(patches int) error {
	if c.NumMasked >= patches {
		return fmt.Errorf("masking.num_masked = %d: must be < %d patches (1..%d)", c.NumMasked, patches, patches-1)
	}
	return nil
}

// Registry is the kind "masking".
var Registry = registry.NewKind[Strategy]("masking", "mimlab/components/masking")

func init() {
	Registry.Register(registry.Entry[Strategy]{
		Name: "block", Doc: "BEiT block-wise masking with CAE's exact count (min_block, aspect range, 10 attempts per block)",
		NewConfig: func() registry.Config {
			return &Config{Name: "block", NumMasked: 24, MinBlock: 4, MinAspect: 0.3}
		},
		Build: func(c registry.Config) (Strategy, error) { return Block{*c.(*Config)}, nil },
	})
	Registry.Register(registry.Entry[Strategy]{
		Name: "random", Doc: "a uniform random subset of exactly num_masked patches",
		NewConfig: func() registry.Config { return &Config{Name: "random", NumMasked: 24} },
		Build:     func(c registry.Config) (Strategy, error) { return Random{c.(*Config).NumMasked}, nil },
	})
}

// Block is BEiT's block-wise masking generator with CAE's loop (`while count != N`, no early break), so it
// always returns exactly NumMasked patches.
type Block struct{ Config }

// Mask implements Strategy.
func (b Block) Mask(r *rand.Rand, grid int) []bool {
	n := b.NumMasked
	mask := make([]bool, grid*grid)
	maxAspect := b.MaxAspect
	if maxAspect == 0 {
		maxAspect = 1 / b.MinAspect
	}
	logLo, logHi := math.Log(b.MinAspect), math.Log(maxAspect)
	count := 0
	// The loop ends with probability 1 (a 1x1 block always fits a free cell eventually); the cap only guards
	// against a pathological config, and then the remaining cells are drawn uniformly (never seen in tests).
	for iter := 0; count != n && iter < 100000; iter++ {
		remaining := n - count // max_num_patches = N
		delta := 0
		for attempt := 0; attempt < 10; attempt++ {
			lo, hi := float64(b.MinBlock), float64(remaining)
			area := lo + r.Float64()*(hi-lo) // Python's uniform(a, b) also works when a > b
			aspect := math.Exp(logLo + r.Float64()*(logHi-logLo))
			h := int(math.Round(math.Sqrt(area * aspect)))
			w := int(math.Round(math.Sqrt(area / aspect)))
			if w < grid && h < grid {
				top := r.IntN(grid - h + 1)
				left := r.IntN(grid - w + 1)
				masked := 0
				for y := top; y < top+h; y++ {
					for x := left; x < left+w; x++ {
						if mask[y*grid+x] {
							masked++
						}
					}
				}
				if nw := h*w - masked; nw > 0 && nw <= remaining {
					for y := top; y < top+h; y++ {
						for x := left; x < left+w; x++ {
							mask[y*grid+x] = true
						}
					}
					delta = nw
				}
				if delta > 0 {
					break
				}
			}
		}
		count += delta
	}
	if count < n {
		free := make([]int, 0, len(mask))
		for i, m := range mask {
			if !m {
				free = append(free, i)
			}
		}
		r.Shuffle(len(free), func(a, b int) { free[a], free[b] = free[b], free[a] })
		for _, i := range free[:n-count] {
			mask[i] = true
		}
	}
	return mask
}

// Random masks a uniform subset of exactly N patches.
type Random struct{ N int }

// Mask implements Strategy.
func (m Random) Mask(r *rand.Rand, grid int) []bool {
	mask := make([]bool, grid*grid)
	for _, i := range r.Perm(grid * grid)[:m.N] {
		mask[i] = true
	}
	return mask
}

// Indices splits a mask into the visible and masked patch indices, each in row-major order (the order of
// CAE's boolean indexing), as int64 for the engine's gathers.
func Indices(mask []bool) (visible, masked []int64) {
	for i, m := range mask {
		if m {
			masked = append(masked, int64(i))
		} else {
			visible = append(visible, int64(i))
		}
	}
	return visible, masked
}
