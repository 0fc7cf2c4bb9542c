package masking

import (
	"fmt"
	"math/rand/v2"
	"strings"
	"testing"
)

// keepBorder is a plugin in the shape of the one a new user wrote: it keeps a border of patches visible and
// masks num_masked of the inner ones, and panics when the inner grid cannot hold them.
type keepBorder struct{ border, n int }

func (k keepBorder) Count() int { return k.n }
func (k keepBorder) Mask(r *rand.Rand, grid int) []bool {
	inner := grid - 2*k.border
	if inner*inner < k.n {
		panic(fmt.Sprintf("cannot mask %d of %d inner patches", k.n, inner*inner))
	}
	m := make([]bool, grid*grid)
	for _, i := range r.Perm(inner * inner)[:k.n] {
		m[(k.border+i/inner)*grid+k.border+i%inner] = true
	}
	return m
}

type checkedBorder struct{ keepBorder }

func (k checkedBorder) CheckGrid(grid int) error {
	if inner := grid - 2*k.border; inner*inner < k.n {
		return fmt.Errorf("masking.keep_border = %d: leaves %d inner patches of a %dx%d grid, fewer than num_masked = %d", k.border, inner*inner, grid, grid, k.n)
	}
	return nil
}

type miscount struct{ n int }

func (m miscount) Count() int { return m.n }
func (m miscount) Mask(r *rand.Rand, grid int) []bool {
	out := make([]bool, grid*grid)
	for i := 0; i < m.n-1; i++ {
		out[i] = true
	}
	return out
}

// A strategy that would fail at run time fails the plan: its own grid check, or a trial draw that panics or
// miscounts, with a message that says what happened on which grid.
func TestCheckGridCatchesWhatRunTimeWould(t *testing.T) {
	cases := []struct {
		name    string
		s       Strategy
		patches int
		want    string
	}{
		{"plugin's own check", checkedBorder{keepBorder{border: 1, n: 9}}, 16, "masking.keep_border = 1: leaves 4 inner patches of a 4x4 grid, fewer than num_masked = 9"},
		{"panicking draw", keepBorder{border: 1, n: 9}, 16, "masking on the 4x4 patch grid: a trial draw panicked: cannot mask 9 of 4 inner patches"},
		{"wrong count", miscount{5}, 49, "a trial draw masked 4 patches, want exactly num_masked = 5"},
		{"fits", keepBorder{border: 1, n: 9}, 49, ""},
		{"block fits", Block{BlockConfig{Name: "block", NumMasked: 24, MinBlock: 4, MinAspect: 0.3}}, 49, ""},
		{"square fits", Square{SquareConfig{Name: "square", NumMasked: 28, Unit: 2}}, 49, ""},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			err := CheckGrid(c.s, c.patches)
			if c.want == "" {
				if err != nil {
					t.Fatal(err)
				}
				return
			}
			if err == nil || !strings.Contains(err.Error(), c.want) {
				t.Fatalf("got %v, want %q", err, c.want)
			}
		})
	}
}
