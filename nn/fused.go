package nn

import (
	"math"

	. "github.com/gomlx/gomlx/core/graph"
)

// Fused GELU, LayerNorm and softmax (BENCHMARKS.md, issue 18). On a backend with the fused op (ONNX Runtime
// for float32, the Go backend) the forward pass is one kernel, and the backward pass is the hand-written
// gradient below, computed from the op's input or output alone, as PyTorch's gelu_backward,
// native_layer_norm_backward and softmax_backward_data are. Differentiating the decomposed chains instead
// made the engine run and keep their intermediates. Elsewhere the decomposed chains are used, unchanged.

// fusedWithVJP builds fwd (the backend's fused op) and gives it the gradient vjp(y, v) for x, where y is the
// op's output and v the gradient arriving at it. ok is false when the backend lacks the op; the caller then
// builds the decomposed graph (what was built here is left unused).
func fusedWithVJP(x *Node, fwd func() *Node, vjp func(y, v *Node) *Node) (out *Node, ok bool) {
	var y *Node
	// GoMLX differentiates a fused op through its "decomposed" alternative: here an identity of x whose own
	// gradient is vjp, so no decomposed forward chain exists for the engine to compute.
	out, ok = InternalFusedOpCaller(func() *Node { y = fwd(); return y },
		func() *Node {
			return IdentityWithCustomGradient(x, func(_, v *Node) *Node { return vjp(y, v) })
		}, true)
	return out, ok
}

// geluChain is the exact (erf) GELU as a chain of ops.
func geluChain(x *Node) *Node {
	return Mul(MulScalar(x, 0.5), OnePlus(Erf(MulScalar(x, 1/math.Sqrt2))))
}

// GELU is the exact (erf) GELU, x Phi(x); its gradient is v (Phi(x) + x phi(x)).
func GELU(x *Node) *Node {
	out, ok := fusedWithVJP(x, func() *Node { return BackendFusedGelu(x, true) }, func(_, v *Node) *Node {
		cdf := MulScalar(OnePlus(Erf(MulScalar(x, 1/math.Sqrt2))), 0.5)
		pdf := MulScalar(Exp(MulScalar(Square(x), -0.5)), 1/math.Sqrt(2*math.Pi))
		return Mul(v, Add(cdf, Mul(x, pdf)))
	})
	if !ok {
		return geluChain(x)
	}
	return out
}

// softmax is softmax over one axis; its gradient is y (v - sum(v y)).
func softmax(logits *Node, axis int) *Node {
	out, ok := fusedWithVJP(logits, func() *Node { return BackendFusedSoftmax(logits, axis) }, func(y, v *Node) *Node {
		return Mul(y, Sub(v, ReduceAndKeep(Mul(v, y), ReduceSum, axis)))
	})
	if !ok {
		return Softmax(logits, axis) // GoMLX's, which falls back to the same decomposition
	}
	return out
}

// normalizeChain is (x - mean) / sqrt(var + LNEps) over the last axis as a chain of ops.
func normalizeChain(x *Node) *Node {
	ax := x.Rank() - 1
	xc := Sub(x, ReduceAndKeep(x, ReduceMean, ax))
	variance := ReduceAndKeep(Square(xc), ReduceMean, ax)
	return Div(xc, Sqrt(AddScalar(variance, LNEps)))
}

// normalize is LayerNorm without its affine part over the last axis: y = (x - mean) r with r =
// 1/sqrt(var + eps). Its gradient is r (v - mean(v) - y mean(v y)); r is recomputed from x in the backward
// pass rather than kept from the forward one.
func normalize(x *Node) *Node {
	ax := x.Rank() - 1
	out, ok := fusedWithVJP(x, func() *Node { return BackendFusedLayerNorm(x, []int{ax}, LNEps, nil, nil) }, func(y, v *Node) *Node {
		xc := Sub(x, ReduceAndKeep(x, ReduceMean, ax))
		r := Inverse(Sqrt(AddScalar(ReduceAndKeep(Square(xc), ReduceMean, ax), LNEps)))
		g := Sub(Sub(v, ReduceAndKeep(v, ReduceMean, ax)), Mul(y, ReduceAndKeep(Mul(v, y), ReduceMean, ax)))
		return Mul(g, r)
	})
	if !ok {
		return normalizeChain(x)
	}
	return out
}
