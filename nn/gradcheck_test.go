package nn

import (
	"fmt"
	"github.com/gomlx/compute"
	"math"
	"math/rand/v2"
	"testing"

	"github.com/gomlx/compute/dtypes"
	"github.com/gomlx/compute/shapes"
	. "github.com/gomlx/gomlx/core/graph"
	"github.com/gomlx/gomlx/core/tensors"
)

// gradCase is a building block reduced to a scalar: out -> sum(out * R) with a fixed random R, so every
// output entry contributes to the gradient.
type gradCase struct {
	name  string
	data  []*tensors.Tensor // float64 inputs are checked too; int64 inputs are indices
	build func(s Scope, data []*Node) *Node
}

func randT(r *rand.Rand, dims ...int) *tensors.Tensor {
	n := 1
	for _, d := range dims {
		n *= d
	}
	v := make([]float64, n)
	for i := range v {
		v[i] = r.NormFloat64()
	}
	return tensors.FromFlatDataAndDimensions(v, dims...)
}

func perSampleIdx(r *rand.Rand, b, n, k int) *tensors.Tensor {
	v := make([]int64, 0, b*k)
	for i := 0; i < b; i++ {
		p := r.Perm(n)[:k]
		for _, x := range p {
			v = append(v, int64(x))
		}
	}
	return tensors.FromFlatDataAndDimensions(v, b, k)
}

// project reduces a node to a scalar with a fixed pseudo-random weight.
func project(x *Node) *Node {
	n := x.Shape().Size()
	r := rand.New(rand.NewPCG(7, uint64(n)))
	w := make([]float64, n)
	for i := range w {
		w[i] = r.NormFloat64()
	}
	c := Reshape(Const(x.Graph(), w), x.Shape().Dimensions...)
	return ReduceAllSum(Mul(x, c))
}

// randomizeParams gives every parameter random values (not the init), so LayerScale, biases and norms all
// have non-trivial gradients.
func randomizeParams(ps *ParamSet, seed uint64) []*tensors.Tensor {
	r := rand.New(rand.NewPCG(seed, 1))
	out := make([]*tensors.Tensor, len(ps.Params))
	for i, p := range ps.Params {
		v := make([]float64, p.Size())
		for j := range v {
			v[j] = 0.3 * r.NormFloat64()
			if p.Init.Kind == InitOnes || p.Init.Kind == InitConst {
				v[j] += 1
			}
		}
		out[i] = tensors.FromFlatDataAndDimensions(v, p.Dims...)
	}
	return out
}

func TestGradientsFiniteDifference(t *testing.T) {
	be := goBackend(t)
	r := rand.New(rand.NewPCG(1, 2))
	const B, N, D, H = 2, 9, 8, 2
	cases := []gradCase{
		{"patch_embed", []*tensors.Tensor{randT(r, B, 2, 6, 6)}, func(s Scope, d []*Node) *Node {
			return PatchEmbed(s.Sub("pe"), Patchify(d[0], 2), D, 2, 2)
		}},
		{"layernorm", []*tensors.Tensor{randT(r, B, N, D)}, func(s Scope, d []*Node) *Node {
			return LayerNorm(s.Sub("ln"), d[0])
		}},
		{"gelu", []*tensors.Tensor{randT(r, B, N, D)}, func(s Scope, d []*Node) *Node {
			return GELU(MulScalar(d[0], 2))
		}},
		{"softmax", []*tensors.Tensor{randT(r, B, N, D)}, func(s Scope, d []*Node) *Node {
			return softmax(MulScalar(d[0], 2), 2)
		}},
		{"normalize", []*tensors.Tensor{randT(r, B, N, D)}, func(s Scope, d []*Node) *Node {
			return normalize(AddScalar(MulScalar(d[0], 3), 1))
		}},
		{"instance_norm", []*tensors.Tensor{randT(r, B, N, D)}, func(s Scope, d []*Node) *Node {
			return InstanceNorm(AddScalar(MulScalar(d[0], 2), 0.5))
		}},
		{"self_attention_block", []*tensors.Tensor{randT(r, B, N, D)}, func(s Scope, d []*Node) *Node {
			return Block(s.Sub("blk"), d[0], BlockConfig{Heads: H, MLPRatio: 2, LayerScale: 0.5})
		}},
		{"regressor_block", []*tensors.Tensor{randT(r, B, 4, D), randT(r, B, 5, D), randT(r, B, 4, D), randT(r, B, 5, D)},
			func(s Scope, d []*Node) *Node {
				return RegressorBlock(s.Sub("reg"), d[0], d[1], d[2], d[3], BlockConfig{Heads: H, MLPRatio: 2, LayerScale: 0.5})
			}},
		{"gather_tokens", []*tensors.Tensor{randT(r, B, N, D), perSampleIdx(r, B, N, 4)}, func(s Scope, d []*Node) *Node {
			return Square(GatherTokens(d[0], d[1]))
		}},
		{"scatter_tokens", []*tensors.Tensor{randT(r, B, 4, D), perSampleIdx(r, B, N, 4)}, func(s Scope, d []*Node) *Node {
			return Square(ScatterTokens(d[0], d[1], N))
		}},
		{"softmax_cross_entropy", []*tensors.Tensor{randT(r, B, N, 7), perSampleIdx(r, B, 7, N/2+1)}, func(s Scope, d []*Node) *Node {
			lab := d[1]
			logits := GatherTokens(d[0], perSampleConst(s, B, N/2+1))
			return SoftmaxCrossEntropy(logits, lab)
		}},
		{"smoothed_cross_entropy", []*tensors.Tensor{randT(r, B, N, 7), perSampleIdx(r, B, 7, N/2+1)}, func(s Scope, d []*Node) *Node {
			logits := GatherTokens(d[0], perSampleConst(s, B, N/2+1))
			return SmoothedCrossEntropy(logits, d[1], 0.1)
		}},
		{"mse", []*tensors.Tensor{randT(r, B, N, D), randT(r, B, N, D)}, func(s Scope, d []*Node) *Node {
			return MSE(d[0], d[1])
		}},
		{"unit_rows", []*tensors.Tensor{randT(r, B, N, D)}, func(s Scope, d []*Node) *Node {
			return UnitRows(d[0])
		}},
		{"batch_norm", []*tensors.Tensor{randT(r, 6, D)}, func(s Scope, d []*Node) *Node {
			return BatchNorm(s.Sub("bn"), AddScalar(MulScalar(d[0], 2), 0.5), true)
		}},
		{"batch_norm_no_affine", []*tensors.Tensor{randT(r, 6, D)}, func(s Scope, d []*Node) *Node {
			return BatchNorm(s, d[0], false)
		}},
		{"info_nce", []*tensors.Tensor{randT(r, 5, D), randT(r, 5, D)}, func(s Scope, d []*Node) *Node {
			return InfoNCE(d[0], d[1], 0.2)
		}},
		{"drop_path_train", []*tensors.Tensor{randT(r, 8, N, D)}, func(s Scope, d []*Node) *Node {
			return DropPath(s, d[0], 0.4)
		}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			checkGradient(t, be, tc)
		})
	}
}

// perSampleConst is a fixed index tensor [b, k] (0..k-1) built in the graph.
func perSampleConst(s Scope, b, k int) *Node {
	return Iota(s.G(), shapes.Make(dtypes.Int64, b, k), 1)
}

func checkGradient(t *testing.T, backend compute.Backend, tc gradCase) {
	t.Helper()
	var dataShapes []shapes.Shape
	var floatIdx []int
	for i, d := range tc.data {
		dataShapes = append(dataShapes, d.Shape())
		if d.DType() == dtypes.Float64 {
			floatIdx = append(floatIdx, i)
		}
	}
	lossFn := func(s Scope, data []*Node) []*Node { return []*Node{project(tc.build(s, data))} }
	ps, err := Declare(backend, dtypes.Float64, true, dataShapes, lossFn)
	if err != nil {
		t.Fatal(err)
	}
	params := randomizeParams(ps, 3)
	rands := ps.PerStep(dtypes.Float64, 5, 0, 1)
	gradProg, err := Compile(backend, ps, dtypes.Float64, true, dataShapes, func(s Scope, data []*Node) []*Node {
		loss := lossFn(s, data)[0]
		wrt := append([]*Node{}, s.b.nodes...)
		for _, i := range floatIdx {
			wrt = append(wrt, data[i])
		}
		return append([]*Node{loss}, Gradient(loss, wrt...)...)
	})
	if err != nil {
		t.Fatal(err)
	}
	lossProg, err := Compile(backend, ps, dtypes.Float64, true, dataShapes, lossFn)
	if err != nil {
		t.Fatal(err)
	}
	outs, err := gradProg.Run(params, rands, tc.data...)
	if err != nil {
		t.Fatal(err)
	}
	loss := func() float64 {
		o, err := lossProg.Run(params, rands, tc.data...)
		if err != nil {
			t.Fatal(err)
		}
		return Float64s(o[0])[0]
	}
	// Targets: every parameter and every float input.
	type target struct {
		name string
		t    **tensors.Tensor
		grad []float64
	}
	var targets []target
	for i := range params {
		targets = append(targets, target{ps.Params[i].Name, &params[i], Float64s(outs[1+i])})
	}
	for j, i := range floatIdx {
		targets = append(targets, target{fmt.Sprintf("input%d", i), &tc.data[i], Float64s(outs[1+len(params)+j])})
	}
	if len(targets) == 0 {
		t.Fatal("nothing to check")
	}
	r := rand.New(rand.NewPCG(11, 13))
	const h = 1e-5
	worst := 0.0
	checked := 0
	for _, tg := range targets {
		vals := Float64s(*tg.t)
		dims := (*tg.t).Shape().Dimensions
		for trial := 0; trial < 4; trial++ {
			j := r.IntN(len(vals))
			orig := vals[j]
			vals[j] = orig + h
			*tg.t = tensors.FromFlatDataAndDimensions(append([]float64(nil), vals...), dims...)
			lp := loss()
			vals[j] = orig - h
			*tg.t = tensors.FromFlatDataAndDimensions(append([]float64(nil), vals...), dims...)
			lm := loss()
			vals[j] = orig
			*tg.t = tensors.FromFlatDataAndDimensions(append([]float64(nil), vals...), dims...)
			num := (lp - lm) / (2 * h)
			an := tg.grad[j]
			// Mixed tolerance: entries whose true gradient is ~0 (the key bias of softmax attention) are
			// judged by absolute error.
			rel := math.Abs(an-num) / math.Max(math.Max(math.Abs(an), math.Abs(num)), 1e-3)
			worst = math.Max(worst, rel)
			checked++
			if rel > 1e-4 {
				t.Errorf("%s[%d]: analytic %.8g, numeric %.8g, rel err %.2g", tg.name, j, an, num, rel)
			}
		}
	}
	t.Logf("%d entries of %d tensors checked, worst relative error %.2g", checked, len(targets), worst)
}
