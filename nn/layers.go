package nn

import (
	"math"

	"github.com/gomlx/compute/dtypes"
	"github.com/gomlx/compute/shapes"
	. "github.com/gomlx/gomlx/core/graph"
)

// LNEps is the LayerNorm epsilon of BEiT/CAE (cae-facts 1.2).
const LNEps = 1e-6

var xavier = Init{Kind: InitXavier}

// lastAxis reshapes a [d] vector to rank r ([1,...,1,d]) so it broadcasts over the last axis.
func lastAxis(v *Node, r int) *Node {
	dims := make([]int, r)
	for i := range dims {
		dims[i] = 1
	}
	dims[r-1] = v.Shape().Dimensions[0]
	return Reshape(v, dims...)
}

// addLast and mulLast broadcast a [d] parameter over x's last axis.
func addLast(x, v *Node) *Node { return Add(x, lastAxis(v, x.Rank())) }
func mulLast(x, v *Node) *Node { return Mul(x, lastAxis(v, x.Rank())) }

// Linear is y = x W^T (+ b) with W stored as [out, in] (PyTorch's layout), xavier-uniform, zero bias.
func Linear(s Scope, x *Node, out int, bias bool) *Node {
	return LinearInit(s, x, out, bias, xavier)
}

// LinearInit is Linear with an explicit weight initialiser.
func LinearInit(s Scope, x *Node, out int, bias bool, init Init) *Node {
	in := x.Shape().Dimensions[x.Rank()-1]
	w := s.Param("weight", []int{out, in}, init)
	y := dotLast(s, x, w) // in train.precision (precision.go)
	if bias {
		y = addLast(y, s.Param("bias", []int{out}, Init{}))
	}
	return y
}

// LayerNorm normalises the last axis with eps 1e-6 and learned weight (1) and bias (0).
func LayerNorm(s Scope, x *Node) *Node {
	d := x.Shape().Dimensions[x.Rank()-1]
	y := mulLast(normalize(x), s.Param("weight", []int{d}, Init{Kind: InitOnes}))
	return addLast(y, s.Param("bias", []int{d}, Init{}))
}

// Normalize is LayerNorm without weight and bias (eps 1e-6) over the last axis: the normalised teacher
// targets of I-JEPA and MAE's norm_pix_loss.
func Normalize(x *Node) *Node { return normalize(x) }

// InstanceNorm normalises each channel (last axis) of x [B, T, D] over the T tokens of its sample (eps 1e-5,
// no affine), as data2vec's F.instance_norm on [B, D, T] does.
func InstanceNorm(x *Node) *Node {
	mean := ExpandAxes(ReduceMean(x, 1), 1)
	c := Sub(x, mean)
	v := ExpandAxes(ReduceMean(Square(c), 1), 1)
	return Div(c, Sqrt(AddScalar(v, 1e-5)))
}

// MLP is fc1 (ratio x width) -> exact GELU -> fc2.
func MLP(s Scope, x *Node, hidden int) *Node {
	d := x.Shape().Dimensions[x.Rank()-1]
	h := GELU(Linear(s.Sub("fc1"), x, hidden, true))
	return Linear(s.Sub("fc2"), h, d, true)
}

// DropPath zeroes whole samples (axis 0) with probability rate during training and rescales the rest by
// 1/(1-rate). Its randomness is a per-step input drawn on the host, so runs are reproducible.
func DropPath(s Scope, x *Node, rate float64) *Node {
	// An EMA copy (a teacher, a momentum encoder) runs deterministically, as data2vec's teacher in eval mode
	// and I-JEPA's and MoCo v3's target encoders (drop path 0) do: it gives targets, not a trained path.
	if rate <= 0 || !s.b.Training || s.ema != nil {
		return x
	}
	bsz := x.Shape().Dimensions[0]
	u := s.Uniform("drop_path", bsz)
	keep := ConvertDType(GreaterOrEqual(u, s.Scalar(rate)), x.DType())
	keep = MulScalar(keep, 1/(1-rate))
	dims := make([]int, x.Rank())
	for i := range dims {
		dims[i] = 1
	}
	dims[0] = bsz
	return Mul(x, Reshape(keep, dims...))
}

// LayerScale multiplies by a learned per-channel gamma initialised to init; init <= 0 disables it.
func LayerScale(s Scope, name string, x *Node, init float64) *Node {
	if init <= 0 {
		return x
	}
	d := x.Shape().Dimensions[x.Rank()-1]
	return mulLast(x, s.Param(name, []int{d}, Init{Kind: InitConst, Value: init}))
}

// BlockConfig sizes a transformer block.
type BlockConfig struct {
	Heads      int
	MLPRatio   float64
	LayerScale float64 // gamma init; 0 disables LayerScale
	DropPath   float64 // this block's drop-path rate
}

// Attend is multi-head scaled dot-product attention on already projected q [B,Nq,D], k, v [B,Nk,D].
// It returns the merged heads [B,Nq,D] and the attention probabilities [B,H,Nq,Nk]. Its products are in
// the graph's dtype; the attention layers use attend, whose products follow train.precision.
func Attend(q, k, v *Node, heads int) (out, probs *Node) { return attend(Scope{}, q, k, v, heads) }

// attend is Attend with QK^T and PV in s's precision (the logits' scaling and the softmax stay in the
// graph's dtype, as autocast leaves softmax in float32).
func attend(s Scope, q, k, v *Node, heads int) (out, probs *Node) {
	b, nq, d := q.Shape().Dimensions[0], q.Shape().Dimensions[1], q.Shape().Dimensions[2]
	nk := k.Shape().Dimensions[1]
	hd := d / heads
	qh := Reshape(q, b, nq, heads, hd)
	kh := Reshape(k, b, nk, heads, hd)
	vh := Reshape(v, b, nk, heads, hd)
	logits := MulScalar(einsum2(s, "bqhd,bkhd->bhqk", qh, kh), 1/math.Sqrt(float64(hd)))
	probs = softmax(logits, 3)
	o := einsum2(s, "bhqk,bkhd->bqhd", probs, vh)
	return Reshape(o, b, nq, d), probs
}

// qkvInit is xavier with the fans of the fused [3D, D] qkv Linear of the official code, so that separate q,
// k and v weights start from exactly the distribution CAE uses.
func qkvInit(d int) Init { return Init{Kind: InitXavier, FanIn: d, FanOut: 3 * d} }

// SelfAttention is BEiT/CAE attention: q, k, v projections without their own bias, plus q_bias and v_bias
// (k has none), then the output projection. The weights are separate q/k/v tensors in the graph (Slice has no
// gradient on ONNX Runtime) and are exported as the fused timm qkv.weight.
func SelfAttention(s Scope, x *Node, heads int) *Node {
	d := x.Shape().Dimensions[x.Rank()-1]
	q := addLast(LinearInit(s.Sub("q"), x, d, false, qkvInit(d)), s.Param("q_bias", []int{d}, Init{}))
	k := LinearInit(s.Sub("k"), x, d, false, qkvInit(d))
	v := addLast(LinearInit(s.Sub("v"), x, d, false, qkvInit(d)), s.Param("v_bias", []int{d}, Init{}))
	o, probs := attend(s, q, k, v, heads)
	s.Capture("attn", probs)
	return Linear(s.Sub("proj"), o, d, true)
}

// CrossAttention is the regressor's attention: queries from xq, keys from xk, values from xv; separate q/k/v
// Linear layers without bias plus q_bias and v_bias, then proj.
func CrossAttention(s Scope, xq, xk, xv *Node, heads int) *Node {
	d := xq.Shape().Dimensions[xq.Rank()-1]
	q := addLast(Linear(s.Sub("q"), xq, d, false), s.Param("q_bias", []int{d}, Init{}))
	k := Linear(s.Sub("k"), xk, d, false)
	v := addLast(Linear(s.Sub("v"), xv, d, false), s.Param("v_bias", []int{d}, Init{}))
	o, probs := attend(s, q, k, v, heads)
	s.Capture("attn", probs)
	return Linear(s.Sub("proj"), o, d, true)
}

// Block is the pre-LN ViT block with LayerScale and drop path (cae-facts 1.2):
// x += DropPath(gamma_1 * Attn(LN1(x))); x += DropPath(gamma_2 * MLP(LN2(x))).
func Block(s Scope, x *Node, c BlockConfig) *Node {
	d := x.Shape().Dimensions[x.Rank()-1]
	a := SelfAttention(s.Sub("attn"), LayerNorm(s.Sub("norm1"), x), c.Heads)
	x = Add(x, DropPath(s.Sub("dp1"), LayerScale(s, "gamma_1", a, c.LayerScale), c.DropPath))
	m := MLP(s.Sub("mlp"), LayerNorm(s.Sub("norm2"), x), int(float64(d)*c.MLPRatio))
	return Add(x, DropPath(s.Sub("dp2"), LayerScale(s, "gamma_2", m, c.LayerScale), c.DropPath))
}

// RegressorBlock is CAE's latent contextual regressor block (cae-facts 1.3), with the official code's
// parameter names (norm1_q_cross, cross_attn, gamma_1_cross, norm2_cross, mlp_cross, ...). xq [B,M,D] are the mask
// queries, xv [B,Nv,D] the visible latents (never updated: only the query stream is returned), posq and posv
// their position embeddings. Keys and values are [xv; xq]; positions go into queries and keys, not values.
//
//	a = CrossAttn(LN_q(xq+posq), LN_k(kv+poskv), LN_v(kv));  x = xq + DropPath(gamma_1*a)
//	x = LN_2(x);  x = x + DropPath(gamma_2*MLP(x))
func RegressorBlock(s Scope, xq, xv, posq, posv *Node, c BlockConfig) *Node {
	d := xq.Shape().Dimensions[2]
	kv := Concatenate([]*Node{xv, xq}, 1)
	s.Capture("kv", kv)
	poskv := Concatenate([]*Node{posv, posq}, 1)
	qn := LayerNorm(s.Sub("norm1_q_cross"), Add(xq, posq))
	kn := LayerNorm(s.Sub("norm1_k_cross"), Add(kv, poskv))
	vn := LayerNorm(s.Sub("norm1_v_cross"), kv)
	a := CrossAttention(s.Sub("cross_attn"), qn, kn, vn, c.Heads)
	x := Add(xq, DropPath(s.Sub("dp1"), LayerScale(s, "gamma_1_cross", a, c.LayerScale), c.DropPath))
	x = LayerNorm(s.Sub("norm2_cross"), x)
	m := MLP(s.Sub("mlp_cross"), x, int(float64(d)*c.MLPRatio))
	return Add(x, DropPath(s.Sub("dp2"), LayerScale(s, "gamma_2_cross", m, c.LayerScale), c.DropPath))
}

// Patchify turns images [B,C,H,W] into patches [B, (H/p)*(W/p), C*p*p], row-major over the grid, each
// patch flattened in (c, i, j) order, the order of a stride-p convolution's weight [D,C,p,p].
func Patchify(x *Node, p int) *Node {
	dims := x.Shape().Dimensions
	b, c, h, w := dims[0], dims[1], dims[2], dims[3]
	gh, gw := h/p, w/p
	x = Reshape(x, b, c, gh, p, gw, p)
	x = TransposeAllAxes(x, 0, 2, 4, 1, 3, 5)
	return Reshape(x, b, gh*gw, c*p*p)
}

// PatchEmbed is the stride-p convolution of ViT written as a Linear map of each patch: patches
// [B,N,C*p*p] -> [B,N,D]. The weight is stored as [D,C,p,p] (timm's patch_embed.proj.weight), truncated
// normal 0.02 as CAE leaves the patch conv.
func PatchEmbed(s Scope, patches *Node, d, c, p int) *Node {
	w := s.Param("weight", []int{d, c, p, p}, Init{Kind: InitTruncNormal, Std: 0.02})
	y := dotLast(s, patches, Reshape(w, d, c*p*p))
	return addLast(y, s.Param("bias", []int{d}, Init{}))
}

// SinCos2D is the fixed 2-D sin-cos position table of MoCo v3 / CAE for a g x g grid of width d (d % 4 ==
// 0), without the cls row: token k at row a = k / g and column b = k % g gets
// [sin(a w), cos(a w), sin(b w), cos(b w)], w_i = 1/10000^(i/(d/4)).
func SinCos2D(g, d int) []float64 {
	pd := d / 4
	out := make([]float64, g*g*d)
	for k := 0; k < g*g; k++ {
		a, b := float64(k/g), float64(k%g)
		row := out[k*d : (k+1)*d]
		for i := 0; i < pd; i++ {
			w := 1 / math.Pow(10000, float64(i)/float64(pd))
			row[i] = math.Sin(a * w)
			row[pd+i] = math.Cos(a * w)
			row[2*pd+i] = math.Sin(b * w)
			row[3*pd+i] = math.Cos(b * w)
		}
	}
	return out
}

// PosTable is SinCos2D as a constant [N, D] node of the builder's dtype.
func PosTable(s Scope, g, d int) *Node {
	v := SinCos2D(g, d)
	c := Const(s.G(), v)
	c = Reshape(c, g*g, d)
	return ConvertDType(c, s.b.DType)
}

// flatIndex turns per-sample token indices idx [B,K] (int64, into N tokens) into row indices [B*K,1] of
// the flattened [B*N, D] tokens.
func flatIndex(idx *Node, n int) *Node {
	b, k := idx.Shape().Dimensions[0], idx.Shape().Dimensions[1]
	offs := MulScalar(Iota(idx.Graph(), shapes.Make(dtypes.Int64, b, k), 0), float64(n))
	return Reshape(Add(idx, offs), b*k, 1)
}

// GatherTokens selects per sample the tokens idx [B,K] (int64) of x [B,N,D] -> [B,K,D].
func GatherTokens(x, idx *Node) *Node {
	b, n, d := x.Shape().Dimensions[0], x.Shape().Dimensions[1], x.Shape().Dimensions[2]
	k := idx.Shape().Dimensions[1]
	out := Gather(Reshape(x, b*n, d), flatIndex(idx, n))
	return Reshape(out, b, k, d)
}

// ScatterTokens places tokens [B,K,D] at positions idx [B,K] of a zero [B,N,D] (the inverse of GatherTokens).
func ScatterTokens(tokens, idx *Node, n int) *Node {
	b, k, d := tokens.Shape().Dimensions[0], tokens.Shape().Dimensions[1], tokens.Shape().Dimensions[2]
	out := Scatter(flatIndex(idx, n), Reshape(tokens, b*k, d), shapes.Make(tokens.DType(), b*n, d), false, true)
	return Reshape(out, b, n, d)
}

// GatherRows selects rows idx [B,K] (int64) of a table [N,D] -> [B,K,D].
func GatherRows(table, idx *Node) *Node {
	b, k := idx.Shape().Dimensions[0], idx.Shape().Dimensions[1]
	d := table.Shape().Dimensions[1]
	return Reshape(Gather(table, Reshape(idx, b*k, 1)), b, k, d)
}

// SoftmaxCrossEntropy is the mean over all leading positions of -log softmax(logits)[label];
// logits [..., V], labels [...] int64.
func SoftmaxCrossEntropy(logits, labels *Node) *Node {
	v := logits.Shape().Dimensions[logits.Rank()-1]
	lsm := LogSoftmax(logits, logits.Rank()-1)
	oh := OneHot(labels, v, logits.DType())
	return Neg(ReduceAllMean(ReduceSum(Mul(lsm, oh), logits.Rank()-1)))
}

// SmoothedCrossEntropy is the cross-entropy against labels smoothed by eps (timm's LabelSmoothingCrossEntropy):
// (1-eps) * CE(one-hot) + eps * mean over classes of -log softmax, averaged over the batch.
func SmoothedCrossEntropy(logits, labels *Node, eps float64) *Node {
	if eps == 0 {
		return SoftmaxCrossEntropy(logits, labels)
	}
	ax := logits.Rank() - 1
	lsm := LogSoftmax(logits, ax)
	oh := OneHot(labels, logits.Shape().Dimensions[ax], logits.DType())
	nll := Neg(ReduceSum(Mul(lsm, oh), ax))
	smooth := Neg(ReduceMean(lsm, ax))
	return ReduceAllMean(Add(MulScalar(nll, 1-eps), MulScalar(smooth, eps)))
}

// Accuracy is the fraction of positions whose argmax equals the label.
func Accuracy(logits, labels *Node) *Node {
	pred := ArgMax(logits, logits.Rank()-1, dtypes.Int64)
	return ReduceAllMean(ConvertDType(Equal(pred, labels), logits.DType()))
}

// MSE is the mean over all elements of (a-b)^2.
func MSE(a, b *Node) *Node { return ReduceAllMean(Square(Sub(a, b))) }
