package nn

import (
	"math"
	"testing"

	"github.com/gomlx/compute/dtypes"
	"github.com/gomlx/compute/shapes"
	"github.com/gomlx/gomlx/core/tensors"
)

// Four micro-batches of 4 give the parameters of one batch of 16 after 3 steps (drop path on, an EMA teacher
// along, AdamW with clipping), to float tolerance, on both backends: the gradients are summed as 1/k of each,
// and each micro-batch gets its rows of the big batch's random inputs.
func TestAccumulationMatchesTheLargeBatch(t *testing.T) {
	c := tinyViT()
	const big, k = 16, 4
	for _, nb := range allBackends(t) {
		t.Run(nb.name, func(t *testing.T) {
			loss := emaLoss(c, Sched{From: 0.9, To: 0.99, Shape: "linear"})
			opt := DefaultAdamW()
			opt.Clip = 0.5 // makes the clipping act, so the summed gradient's norm matters
			x, keep := randImages(4, big, 1, 12), keepIdx(big, 5)
			whole, err := NewTrainer(nb.be, dtypes.Float32, loss, []shapes.Shape{x.Shape(), keep.Shape()}, opt, 9)
			if err != nil {
				t.Fatal(err)
			}
			defer whole.Finalize()
			xs, ks := CutRows(x, k), CutRows(keep, k)
			accum, err := NewTrainer(nb.be, dtypes.Float32, loss, []shapes.Shape{xs[0].Shape(), ks[0].Shape()}, opt, 9)
			if err != nil {
				t.Fatal(err)
			}
			defer accum.Finalize()
			if len(accum.Set.Rands) == 0 {
				t.Fatal("no random inputs: the test would not check their cutting")
			}
			whole.Total, accum.Total = 3, 3
			micro := make([][]*tensors.Tensor, k)
			for j := range micro {
				micro[j] = []*tensors.Tensor{xs[j], ks[j]}
			}
			for step := 0; step < 3; step++ {
				l1, g1, _, err := whole.TrainStep(1e-2, x, keep)
				if err != nil {
					t.Fatal(err)
				}
				l2, g2, _, err := accum.AccumStep(1e-2, micro)
				if err != nil {
					t.Fatal(err)
				}
				if math.Abs(l1-l2) > 1e-5*math.Abs(l1) || math.Abs(g1-g2) > 1e-4*g1 {
					t.Fatalf("step %d: loss %v vs %v, grad norm %v vs %v", step+1, l1, l2, g1, g2)
				}
			}
			worst := 0.0
			for i, p := range whole.Set.Params {
				a, b := Float32s(whole.Params[i]), Float32s(accum.Params[i])
				for q := range a {
					d := math.Abs(float64(a[q] - b[q]))
					worst = math.Max(worst, d)
					if d > 2e-5 {
						t.Fatalf("%s[%d]: %v with one batch, %v accumulated", p.Name, q, a[q], b[q])
					}
				}
			}
			t.Logf("largest parameter difference after 3 steps: %.2g", worst)
		})
	}
}
