package masking

import (
	"math/rand/v2"

	"mimlab/framework/registry"
)

// RandomConfig is [masking] for name = "random".
type RandomConfig struct {
	Name      string `toml:"name"`
	NumMasked int    `toml:"num_masked" doc:"patches masked in every sample (exact)"`
}

// Validate checks the section.
func (c *RandomConfig) Validate() error { return checkCount(c.NumMasked) }

func init() {
	Registry.Register(registry.Entry[Strategy]{
		Name: "random", Doc: "a uniform random subset of exactly num_masked patches",
		NewConfig: func() registry.Config { return &RandomConfig{Name: "random", NumMasked: 24} },
		Build:     func(c registry.Config) (Strategy, error) { return Random{c.(*RandomConfig).NumMasked}, nil },
	})
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

// Count implements Strategy.
func (m Random) Count() int { return m.N }
