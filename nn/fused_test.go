package nn

import (
	"math"
	"math/rand/v2"
	"testing"

	"github.com/gomlx/compute"
	. "github.com/gomlx/gomlx/core/graph"
	"github.com/gomlx/gomlx/core/tensors"
)

// The fused GELU, softmax and LayerNorm (one engine kernel forward, a hand-written gradient) compute what
// their op chains compute, values and gradients, in float32 on every backend; and ONNX Runtime does run them
// fused (the lever of BENCHMARKS.md, issue 18, would otherwise fall back to the chains without a sign).
// Their float64 finite-difference checks are in TestGradientsFiniteDifference.
func TestFusedOpsMatchTheirChains(t *testing.T) {
	cases := []struct {
		name         string
		op           compute.OpType
		fused, chain func(x *Node) *Node
	}{
		{"gelu", compute.OpTypeFusedGelu, GELU, geluChain},
		{"softmax", compute.OpTypeFusedSoftmax, func(x *Node) *Node { return softmax(x, 2) }, func(x *Node) *Node { return softmaxChain(x, 2) }},
		{"normalize", compute.OpTypeFusedLayerNorm, normalize, normalizeChain},
	}
	r := rand.New(rand.NewPCG(3, 4))
	xs := make([]float32, 2*5*16)
	ws := make([]float32, len(xs))
	for i := range xs {
		xs[i], ws[i] = float32(2*r.NormFloat64()+0.5), float32(r.NormFloat64())
	}
	for _, nb := range allBackends(t) {
		if nb.name == "ort" && !nb.be.Capabilities().Operations[compute.OpTypeFusedGelu] {
			t.Fatal("ort: the backend does not report the fused ops")
		}
		for _, c := range cases {
			t.Run(nb.name+"/"+c.name, func(t *testing.T) {
				outs, err := ExecOnceN(nb.be, func(x, w *Node) []*Node {
					f, ch := c.fused(x), c.chain(x)
					gf := Gradient(ReduceAllSum(Mul(f, w)), x)[0]
					gc := Gradient(ReduceAllSum(Mul(ch, w)), x)[0]
					return []*Node{f, ch, gf, gc}
				}, tensors.FromFlatDataAndDimensions(xs, 2, 5, 16), tensors.FromFlatDataAndDimensions(ws, 2, 5, 16))
				if err != nil {
					t.Fatal(err)
				}
				defer Free(outs...)
				for _, pair := range [][2]int{{0, 1}, {2, 3}} {
					a, b := Float32s(outs[pair[0]]), Float32s(outs[pair[1]])
					worst := 0.0
					for i := range a {
						worst = math.Max(worst, math.Abs(float64(a[i]-b[i]))/(1+math.Abs(float64(b[i]))))
					}
					what := map[int]string{0: "values", 2: "gradients"}[pair[0]]
					if worst > 2e-5 {
						t.Errorf("%s: fused and chain differ by %.2g (relative)", what, worst)
					}
					t.Logf("%s: largest difference %.2g", what, worst)
				}
			})
		}
	}
}
