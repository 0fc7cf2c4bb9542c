// Package masking holds the masking strategies a spec can name under [masking]: block (BEiT's block-wise
// masking with CAE's exact-count loop, cae-facts 2.1), random (a uniform subset), and whatever else is
// registered. Every strategy returns exactly Count() patches, so every sample of a batch has the same count
// (the static shapes the engine and CAE's gathers need). Each strategy is one file: its config, its
// registration and its Mask.
package masking

import (
	"fmt"
	"math/rand/v2"

	"mimlab/framework/registry"
)

// Strategy draws one mask over a grid x grid patch grid: true = masked, row-major, exactly Count() true.
type Strategy interface {
	Mask(r *rand.Rand, grid int) []bool
	Count() int
}

// Registry is the kind "masking".
var Registry = registry.NewKind[Strategy]("masking", "mimlab/components/masking")

// CheckGrid checks a strategy's count against the number of patches (the key is num_masked by convention).
func CheckGrid(s Strategy, patches int) error {
	if n := s.Count(); n >= patches {
		return fmt.Errorf("masking.num_masked = %d: must be < %d patches (1..%d)", n, patches, patches-1)
	}
	return nil
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
