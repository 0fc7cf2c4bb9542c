package nn

import (
	"math"
	"math/rand/v2"
	"testing"

	. "github.com/gomlx/gomlx/core/graph"
	"github.com/gomlx/gomlx/core/tensors"
)

// The fused GELU, softmax and LayerNorm (one engine kernel forward, a hand-written gradient) compute what
// their op chains compute, values and gradients, in float32 on every backend; and both backends do take the
// fused path for float32 (the lever of BENCHMARKS.md, issue 18, would otherwise fall back to the chains
// without a sign; GOMLX_FUSION=0, which turns GoMLX's fusion off, fails this test on purpose).
// Their float64 finite-difference checks are in TestGradientsFiniteDifference.
func TestFusedOpsMatchTheirChains(t *testing.T) {
	cases := []struct {
		name         string
		fused, chain func(x *Node) *Node
		backend      func(x *Node) *Node // the backend's fused op alone
	}{
		{"gelu", GELU, geluChain, func(x *Node) *Node { return BackendFusedGelu(x, true) }},
		{"softmax", func(x *Node) *Node { return softmax(x, 2) }, func(x *Node) *Node { return softmaxChain(x, 2) },
			func(x *Node) *Node { return BackendFusedSoftmax(x, 2) }},
		{"normalize", normalize, normalizeChain, func(x *Node) *Node { return BackendFusedLayerNorm(x, []int{2}, LNEps, nil, nil) }},
	}
	r := rand.New(rand.NewPCG(3, 4))
	xs := make([]float32, 2*5*16)
	ws := make([]float32, len(xs))
	for i := range xs {
		xs[i], ws[i] = float32(2*r.NormFloat64()+0.5), float32(r.NormFloat64())
	}
	for _, nb := range allBackends(t) {
		for _, c := range cases {
			t.Run(nb.name+"/"+c.name, func(t *testing.T) {
				fusedTaken := false
				outs, err := ExecOnceN(nb.be, func(x, w *Node) []*Node {
					// The same call the op makes: on float32 both backends must take the fused path, or the
					// comparison below would compare the chain with itself.
					_, fusedTaken = fusedWithVJP(x, func() *Node { return c.backend(x) }, func(_, v *Node) *Node { return v })
					f, ch := c.fused(x), c.chain(x)
					gf := Gradient(ReduceAllSum(Mul(f, w)), x)[0]
					gc := Gradient(ReduceAllSum(Mul(ch, w)), x)[0]
					return []*Node{f, ch, gf, gc}
				}, tensors.FromFlatDataAndDimensions(xs, 2, 5, 16), tensors.FromFlatDataAndDimensions(ws, 2, 5, 16))
				if err != nil {
					t.Fatal(err)
				}
				defer Free(outs...)
				if !fusedTaken {
					t.Fatalf("%s: the fused op was not used (the backend lacks it, or GoMLX fusion is disabled)", nb.name)
				}
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

// softmaxChain is softmax over axis as a chain of ops (GoMLX's decomposition), the reference the fused
// softmax is checked against.
func softmaxChain(logits *Node, axis int) *Node {
	e := Exp(Sub(logits, StopGradient(ReduceAndKeep(logits, ReduceMax, axis))))
	return Div(e, ReduceAndKeep(e, ReduceSum, axis))
}
