package method

import (
	"math"
	"testing"

	"github.com/gomlx/compute/dtypes"
	"github.com/gomlx/compute/shapes"
	. "github.com/gomlx/gomlx/core/graph"
	"github.com/gomlx/gomlx/core/tensors"
	"mimlab/nn"
	"mimlab/nn/nntest"
)

// Fig. 4 as the paper draws it reconstructs every patch from the encoder on the whole image, regressor
// skipped: the same as the masked-patch path fed every patch, and it depends on the image (a zero image gives
// other predictions).
func TestReconstructAllIsTheEncoderOnTheWholeImage(t *testing.T) {
	be := nntest.Go(t)
	m := model(t, "cae", "transformer", true)
	in := batch(3, dtypes.Float64)
	ps, params := declare(t, be, m, dtypes.Float64, in)
	n := m.ViT.NumPatches()
	r := m.Method.(Reconstructor)
	out := run(t, be, ps, params, dtypes.Float64, in, func(s nn.Scope, d []*Node) []*Node {
		all := Iota(d[0].Graph(), shapes.Make(dtypes.Int64, tB, n), 1)
		return []*Node{r.ReconstructAll(m, s, d[0]), r.Reconstruct(m, s, d[0], all), r.ReconstructAll(m, s, ZerosLike(d[0]))}
	})
	whole, viaMasked, zero := tensors.MustCopyFlatData[float64](out[0]), tensors.MustCopyFlatData[float64](out[1]), tensors.MustCopyFlatData[float64](out[2])
	if want := tB * n * m.Target.Dim(); len(whole) != want {
		t.Fatalf("%d values, want %d (every patch)", len(whole), want)
	}
	differs := false
	for i := range whole {
		if math.Abs(whole[i]-viaMasked[i]) > 1e-9 {
			t.Fatalf("entry %d: %v whole-image path, %v masked path over every patch", i, whole[i], viaMasked[i])
		}
		differs = differs || math.Abs(whole[i]-zero[i]) > 1e-6
	}
	if !differs {
		t.Fatal("the reconstruction does not depend on the image")
	}
}
