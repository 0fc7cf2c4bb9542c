package masking

import (
	"fmt"
	"math"
	"math/rand/v2"

	"mimlab/framework/registry"
)

// BlockConfig is [masking] for name = "block".
type BlockConfig struct {
	Name      string  `toml:"name"`
	NumMasked int     `toml:"num_masked" doc:"patches masked in every sample (exact)"`
	MinBlock  int     `toml:"min_block" doc:"smallest block area in patches (BEiT/CAE: 16 on 14x14)"`
	MinAspect float64 `toml:"min_aspect" doc:"aspect ratio range [min_aspect, max_aspect]"`
	MaxAspect float64 `toml:"max_aspect" doc:"0 = 1/min_aspect"`
}

// Validate checks the values that do not depend on the grid; CheckGrid checks the rest.
func (c *BlockConfig) Validate() error {
	if err := checkCount(c.NumMasked); err != nil {
		return err
	}
	switch {
	case c.MinBlock < 1:
		return fmt.Errorf("masking.min_block = %d: must be >= 1", c.MinBlock)
	case c.MinAspect <= 0 || c.MinAspect > 1:
		return fmt.Errorf("masking.min_aspect = %v: must be in (0, 1]", c.MinAspect)
	case c.MaxAspect != 0 && (c.MaxAspect < c.MinAspect || c.MaxAspect > 1e6):
		return fmt.Errorf("masking.max_aspect = %v: must be in [min_aspect %v, 1e6]", c.MaxAspect, c.MinAspect)
	}
	return nil
}

func init() {
	Registry.Register(registry.Entry[Strategy]{
		Name: "block", Default: true, Doc: "BEiT block-wise masking with CAE's exact count (min_block, aspect range, 10 attempts per block)",
		NewConfig: func() registry.Config {
			return &BlockConfig{Name: "block", NumMasked: 24, MinBlock: 4, MinAspect: 0.3}
		},
		Build: func(c registry.Config) (Strategy, error) { return Block{*c.(*BlockConfig)}, nil },
	})
}

// Block is BEiT's block-wise masking generator with CAE's loop (`while count != N`, no early break), so it
// always returns exactly NumMasked patches.
type Block struct{ BlockConfig }

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

// Count implements Strategy.
func (b Block) Count() int { return b.NumMasked }
