package masking

import (
	"fmt"
	"math/rand/v2"

	"mimlab/framework/registry"
)

// SquareConfig is [masking] for name = "square": SimMIM's random masking of large square mask units.
type SquareConfig struct {
	Name      string `toml:"name"`
	NumMasked int    `toml:"num_masked" doc:"patches masked in every sample (exact)"`
	Unit      int    `toml:"unit" doc:"side of a square mask unit, in patches (2 = 8x8 pixels with 4x4 patches)"`
}

// Validate checks the section.
func (c *SquareConfig) Validate() error {
	if err := checkCount(c.NumMasked); err != nil {
		return err
	}
	if c.Unit < 1 || c.Unit > 1024 {
		return fmt.Errorf("masking.unit = %d: must be in [1, 1024]", c.Unit)
	}
	return nil
}

func init() {
	Registry.Register(registry.Entry[Strategy]{
		Name: "square", Doc: "SimMIM: random square mask units of unit x unit patches, exactly num_masked patches",
		NewConfig: func() registry.Config { return &SquareConfig{Name: "square", NumMasked: 28, Unit: 2} },
		Build:     func(c registry.Config) (Strategy, error) { return Square{*c.(*SquareConfig)}, nil },
	})
}

// Square tiles the grid with unit x unit squares (cut at the right and bottom edges when unit does not
// divide the grid), takes them in a random order while they fit into num_masked, and completes the count
// with the first cells (row-major) of the next square, so every sample has exactly num_masked patches (the
// static shapes the engine needs; SimMIM's own count is approximate at the edges).
type Square struct{ SquareConfig }

// Count implements Strategy.
func (q Square) Count() int { return q.NumMasked }

// Mask implements Strategy.
func (q Square) Mask(r *rand.Rand, grid int) []bool {
	u := q.Unit
	per := (grid + u - 1) / u
	mask := make([]bool, grid*grid)
	count := 0
	for _, sq := range r.Perm(per * per) {
		y0, x0 := (sq/per)*u, (sq%per)*u
		for y := y0; y < min(y0+u, grid) && count < q.NumMasked; y++ {
			for x := x0; x < min(x0+u, grid) && count < q.NumMasked; x++ {
				mask[y*grid+x] = true
				count++
			}
		}
		if count == q.NumMasked {
			break
		}
	}
	return mask
}
