package nn

import (
	"github.com/gomlx/compute/dtypes"
	"github.com/gomlx/compute/shapes"
	. "github.com/gomlx/gomlx/core/graph"
)

// BNEps is BatchNorm1d's epsilon (PyTorch's default).
const BNEps = 1e-5

// UnitRows scales each row of x [..., D] to unit length along its last axis, as F.normalize(x, dim=-1)
// (its eps of 1e-12 is put under the root, where it keeps the gradient finite at x = 0).
func UnitRows(x *Node) *Node {
	ax := x.Rank() - 1
	n := Sqrt(AddScalar(ReduceSum(Square(x), ax), 1e-24))
	return Div(x, ExpandAxes(n, ax))
}

// BatchNorm normalises x [B, D] over the batch (axis 0) with the batch's own mean and biased variance, eps
// 1e-5, then (affine) a learned weight (1) and bias (0) per channel: BatchNorm1d in training mode. It keeps
// no running statistics, so it is for heads that only ever run in training steps (MoCo v3's projector and
// predictor); a graph that evaluates it normalises over whatever batch it is given.
func BatchNorm(s Scope, x *Node, affine bool) *Node {
	mean := ExpandAxes(ReduceMean(x, 0), 0)
	c := Sub(x, mean)
	v := ExpandAxes(ReduceMean(Square(c), 0), 0)
	y := Div(c, Sqrt(AddScalar(v, BNEps)))
	if !affine {
		return y
	}
	d := x.Shape().Dimensions[x.Rank()-1]
	y = mulLast(y, s.Param("weight", []int{d}, Init{Kind: InitOnes}))
	return addLast(y, s.Param("bias", []int{d}, Init{}))
}

// InfoNCE is MoCo v3's contrastive loss of queries q [B, D] against keys k [B, D]: both L2-normalised, the
// logits q·kᵀ / tau [B, B], the cross-entropy of each query against its own key (the diagonal) with the
// batch's other keys as negatives, averaged over the batch and scaled by 2·tau (the official code's
// `CrossEntropyLoss()(logits, labels) * (2 * T)`, which makes the gradient's scale independent of tau). It
// does not stop the keys' gradient: callers pass keys already under StopGradient when they must carry none.
func InfoNCE(q, k *Node, tau float64) *Node {
	b := q.Shape().Dimensions[0]
	logits := MulScalar(DotGeneral(UnitRows(q), []int{1}, nil, UnitRows(k), []int{1}, nil), 1/tau)
	eye := OneHot(Iota(q.Graph(), shapes.Make(dtypes.Int64, b), 0), b, logits.DType())
	ce := Neg(ReduceAllMean(ReduceSum(Mul(LogSoftmax(logits, 1), eye), 1)))
	return MulScalar(ce, 2*tau)
}
