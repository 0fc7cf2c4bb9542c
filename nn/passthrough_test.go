package nn

import (
	"slices"
	"testing"

	"github.com/gomlx/compute/dtypes"
	"github.com/gomlx/compute/shapes"
	. "github.com/gomlx/gomlx/core/graph"
	"github.com/gomlx/gomlx/core/tensors"
)

// An output that is not computed by a node of its own (an input passed straight through, a constant, a node
// returned twice) must come back with its values on every backend, run after run, after its inputs are freed.
// On ort such outputs came back as whatever the executable's recycled output buffer held (issue 31: the SGD
// branch of the optimiser returned V[0] = 1.12e-43 after one step).
func TestPassThroughOutputs(t *testing.T) {
	sh := shapes.Make(dtypes.Float32, 3)
	cases := []struct {
		name  string
		build func(in []*Node) []*Node
		want  [][]float32
	}{
		{"input passed through", func(in []*Node) []*Node { return []*Node{in[0], Add(in[1], in[1]), in[1]} },
			[][]float32{{1, 2, 3}, {8, 10, 12}, {4, 5, 6}}},
		{"only inputs", func(in []*Node) []*Node { return []*Node{in[1], in[0]} },
			[][]float32{{4, 5, 6}, {1, 2, 3}}},
		{"constant", func(in []*Node) []*Node {
			return []*Node{Const(in[0].Graph(), []float32{7, 8, 9}), Mul(in[0], in[1])}
		}, [][]float32{{7, 8, 9}, {4, 10, 18}}},
		{"one node twice", func(in []*Node) []*Node { s := Sub(in[1], in[0]); return []*Node{s, s} },
			[][]float32{{3, 3, 3}, {3, 3, 3}}},
	}
	for _, nb := range allBackends(t) {
		for _, c := range cases {
			t.Run(nb.name+"/"+c.name, func(t *testing.T) {
				ps := &ParamSet{index: map[string]int{}}
				prog, err := Compile(nb.be, ps, dtypes.Float32, false, []shapes.Shape{sh, sh}, func(s Scope, in []*Node) []*Node { return c.build(in) })
				if err != nil {
					t.Fatal(err)
				}
				defer prog.Finalize()
				for run := 0; run < 4; run++ { // later runs reuse recycled output buffers
					a := tensors.FromFlatDataAndDimensions([]float32{1, 2, 3}, 3)
					b := tensors.FromFlatDataAndDimensions([]float32{4, 5, 6}, 3)
					outs, err := prog.Run(nil, nil, a, b)
					if err != nil {
						t.Fatal(err)
					}
					Free(a, b)
					for i, o := range outs {
						if got := Float32s(o); !slices.Equal(got, c.want[i]) {
							t.Fatalf("run %d output %d = %v, want %v", run, i, got, c.want[i])
						}
					}
					Free(outs...)
				}
			})
		}
	}
}

// The SGD optimiser passes the second moments through unchanged: after steps they must still be zeros.
func TestSGDKeepsItsUnusedMoments(t *testing.T) {
	c := tinyViT()
	for _, nb := range allBackends(t) {
		t.Run(nb.name, func(t *testing.T) {
			x, keep := randImages(1, 4, 1, 12), keepIdx(4, 5)
			opt := Optimizer{SGD: true, Beta1: 0.9, WeightDecay: 1e-4}
			tr, err := NewTrainer(nb.be, dtypes.Float32, encoderLoss(c), []shapes.Shape{x.Shape(), keep.Shape()}, opt, 1)
			if err != nil {
				t.Fatal(err)
			}
			defer tr.Finalize()
			for i := 0; i < 3; i++ {
				if _, _, _, err := tr.TrainStep(1e-2, x, keep); err != nil {
					t.Fatal(err)
				}
			}
			for i, v := range tr.V {
				for j, x := range Float32s(v) {
					if x != 0 {
						t.Fatalf("V[%d] (%s)[%d] = %g after 3 SGD steps, want 0", i, tr.Set.Params[i].Name, j, x)
					}
				}
			}
		})
	}
}
