// Package masking holds the masking strategies a spec can name under [masking]: block (BEiT's block-wise
// masking with CAE's exact-count loop, cae-facts 2.1), random (a uniform subset), and whatever else is
// registered. Every strategy returns exactly Count() patches, so every sample of a batch has the same count
// (the static shapes the engine and CAE's gathers need). Each strategy is one file: its config, its
// registration and its Mask.
package masking

import (
	"fmt"
	"math"
	"math/rand/v2"
	"time"

	"mimlab/framework/registry"
)

// Strategy draws one mask over a grid x grid patch grid: true = masked, row-major, exactly Count() true.
type Strategy interface {
	Mask(r *rand.Rand, grid int) []bool
	Count() int
}

// Registry is the kind "masking".
var Registry = registry.NewKind[Strategy]("masking", "mimlab/components/masking")

// GridChecker is a strategy whose keys depend on the patch grid (a border to keep, a unit that must fit):
// CheckGrid says at plan time what Mask would otherwise fail on at run time, naming the key.
type GridChecker interface {
	CheckGrid(grid int) error
}

// CheckGrid checks a strategy against a grid of patches (a square count) before anything runs: the count
// (num_masked by convention) must leave a visible patch, the strategy's own grid checks (GridChecker) must
// pass, and a few trial draws must return a mask of the grid with exactly Count() patches, without a panic and
// in time. A plugin that would fail the trial at run time with its own panic text fails the plan instead.
func CheckGrid(s Strategy, patches int) error {
	if n := s.Count(); n >= patches {
		return fmt.Errorf("masking.num_masked = %d: must be < %d patches (1..%d)", n, patches, patches-1)
	}
	grid := int(math.Round(math.Sqrt(float64(patches))))
	if gc, ok := s.(GridChecker); ok {
		if err := gc.CheckGrid(grid); err != nil {
			return err
		}
	}
	for seed := uint64(0); seed < 8; seed++ {
		if err := trialDraw(s, grid, seed); err != nil {
			return fmt.Errorf("masking on the %dx%d patch grid: %w", grid, grid, err)
		}
	}
	return nil
}

// trialDraw draws one mask and checks it, turning a panic or a hang into an error.
func trialDraw(s Strategy, grid int, seed uint64) error {
	done := make(chan error, 1)
	go func() {
		defer func() {
			if r := recover(); r != nil {
				done <- fmt.Errorf("a trial draw panicked: %v", r)
			}
		}()
		m := s.Mask(rand.New(rand.NewPCG(seed, 0x636865636b)), grid)
		n := 0
		for _, b := range m {
			if b {
				n++
			}
		}
		switch {
		case len(m) != grid*grid:
			done <- fmt.Errorf("a trial draw returned %d entries, want %d", len(m), grid*grid)
		case n != s.Count():
			done <- fmt.Errorf("a trial draw masked %d patches, want exactly num_masked = %d", n, s.Count())
		default:
			done <- nil
		}
	}()
	select {
	case err := <-done:
		return err
	case <-time.After(5 * time.Second):
		return fmt.Errorf("a trial draw did not return within 5 s")
	}
}

// checkCount is the shared check of num_masked.
func checkCount(n int) error {
	if n <= 0 {
		return fmt.Errorf("masking.num_masked = %d: must be >= 1", n)
	}
	if n > 1<<20 {
		return fmt.Errorf("masking.num_masked = %d: must be <= %d", n, 1<<20)
	}
	return nil
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
