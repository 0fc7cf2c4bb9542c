package masking

import (
	"math/rand/v2"
	"testing"
)

// Square masking returns exactly the requested count for every grid, unit and count, and its masked cells
// come in unit x unit squares aligned to the unit grid (all but at most one partly filled square).
func TestSquareExactCountAndSquares(t *testing.T) {
	for _, c := range []struct{ grid, unit, n int }{{7, 2, 28}, {7, 2, 25}, {7, 3, 30}, {6, 2, 20}, {14, 2, 98}, {7, 1, 10}, {7, 2, 48}} {
		q := Square{SquareConfig{Name: "square", NumMasked: c.n, Unit: c.unit}}
		r := rand.New(rand.NewPCG(1, 2))
		for s := 0; s < 200; s++ {
			mask := q.Mask(r, c.grid)
			got := 0
			for _, m := range mask {
				if m {
					got++
				}
			}
			if got != c.n {
				t.Fatalf("%+v: %d masked", c, got)
			}
			partial := 0
			per := (c.grid + c.unit - 1) / c.unit
			for sq := 0; sq < per*per; sq++ {
				in, size := 0, 0
				for y := (sq / per) * c.unit; y < min((sq/per)*c.unit+c.unit, c.grid); y++ {
					for x := (sq % per) * c.unit; x < min((sq%per)*c.unit+c.unit, c.grid); x++ {
						size++
						if mask[y*c.grid+x] {
							in++
						}
					}
				}
				if in > 0 && in < size {
					partial++
				}
			}
			if partial > 1 {
				t.Fatalf("%+v: %d squares partly masked, want at most 1", c, partial)
			}
		}
	}
}
