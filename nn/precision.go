package nn

import (
	"fmt"
	"slices"
	"strings"

	"github.com/gomlx/compute/dtypes"
	. "github.com/gomlx/gomlx/core/graph"
)

// Mixed precision (train.precision, issue 34), as MAE, BEiT and CAE train with AMP: the matrix products
// (every Linear, the patch embedding, and attention's QK^T and PV) take bfloat16 operands and return a
// bfloat16 result, which is widened back to the graph's dtype at once; everything else (LayerNorm, softmax,
// GELU, the residual stream, the losses, the gradients' sums, the optimizer and the master weights) stays in
// float32, and so do checkpoints and exported encoders (they hold the master weights).
//
// This is what torch.autocast(dtype=torch.bfloat16) does to a linear layer: operands cast to bf16, products
// accumulated in float32, the result rounded to bf16. The backward pass follows from the casts: the gradient
// arriving at a product is rounded to bf16, the two gradient products run in bf16 too, and a weight's
// gradient is widened to float32 before it reaches the master weight, as autocast's cast nodes do in
// PyTorch.
//
// Backends (measured on this repository's backends, nn/precision_test.go):
//   - go: native bfloat16 DotGeneral with float32 accumulation (github.com/gomlx/compute's Go backend). It
//     is not faster than float32 there (it converts operands in its inner loops); it is a reference for
//     the numbers, not a speed path.
//   - xla: native bfloat16 on the GPU (tensor cores); the speed path.
//   - ort: refused. compute-onnx advertises BFloat16 but lowers it to ONNX FLOAT (dtypeToONNX in
//     third_party/compute-onnx/compile.go) and keeps bf16 buffers as float32, so a float32 -> bf16 ->
//     float32 round trip and a bf16 product round nothing there (ONNX Runtime's CPU provider has no bf16
//     MatMul kernel to lower to anyway): a bf16 run on ort would silently be a float32 run under another
//     identity. TestORTDoesNotRoundBF16 pins this, so a compute-onnx that starts rounding is noticed.

// Precision is the arithmetic of a training step's matrix products.
type Precision string

const (
	FP32 Precision = "fp32" // everything in the graph's dtype (the default)
	BF16 Precision = "bf16" // matrix products in bfloat16, the rest float32
)

// Precisions lists the values train.precision accepts.
var Precisions = []string{string(FP32), string(BF16)}

// BF16Backends are the backends (as --backend names them) that run bf16.
var BF16Backends = []string{"go", "xla"}

// SupportsPrecision says whether a backend, named as NewBackend resolves it ("go", "ort", "xla:cuda") or as
// --backend names it, runs p.
func SupportsPrecision(backend string, p Precision) bool {
	if p == "" || p == FP32 {
		return true
	}
	name, _, _ := strings.Cut(backend, ":")
	if name == "cuda" {
		name = "xla"
	}
	return p == BF16 && slices.Contains(BF16Backends, name)
}

// CheckPrecision is nil when backend runs p, else the error that names the key, the backend and the
// backends that can.
func CheckPrecision(backend string, p Precision) error {
	if !slices.Contains(Precisions, string(p)) && p != "" {
		return fmt.Errorf("train.precision = %q: allowed values are %s", p, strings.Join(Precisions, ", "))
	}
	if SupportsPrecision(backend, p) {
		return nil
	}
	why := ""
	if n, _, _ := strings.Cut(backend, ":"); n == "ort" || n == "onnx" {
		why = " (ONNX Runtime's CPU provider has no bf16 matrix product, and compute-onnx would silently compute in float32)"
	}
	return fmt.Errorf("train.precision = %q: backend %s cannot run it%s; backends that can: %s (on a GPU: --device cuda), or set train.precision = \"fp32\"",
		p, backend, why, strings.Join(BF16Backends, ", "))
}

// WithPrecision returns loss built with its matrix products in precision p (the Trainer compiles it for the
// dry build and for every data shape, so every build of the step gets p).
func WithPrecision(p Precision, loss LossFn) LossFn {
	if p == "" || p == FP32 {
		return loss
	}
	return func(s Scope, data []*Node) (*Node, []*Node) {
		s.b.Precision = p
		return loss(s, data)
	}
}

// lowPrecision is the dtype of the builder's matrix-product operands, or false when they stay as they are.
func (s Scope) lowPrecision() (dtypes.DType, bool) {
	if s.b != nil && s.b.Precision == BF16 {
		return dtypes.BFloat16, true
	}
	return dtypes.InvalidDType, false
}

// inPrecision runs a matrix product f on operands cast to the scope's precision and widens its result back
// to the operands' dtype; in fp32 it is f itself.
func inPrecision(s Scope, f func(a, b *Node) *Node, a, b *Node) *Node {
	low, ok := s.lowPrecision()
	if !ok {
		return f(a, b)
	}
	dt := a.DType()
	return ConvertDType(f(ConvertDType(a, low), ConvertDType(b, low)), dt)
}

// dotLast is x contracted on its last axis with w [out, in] on axis 1 (Linear's product), in s's precision.
func dotLast(s Scope, x, w *Node) *Node {
	return inPrecision(s, func(a, b *Node) *Node {
		return DotGeneral(a, []int{a.Rank() - 1}, nil, b, []int{1}, nil)
	}, x, w)
}

// einsum2 is Einsum(eq, a, b) in s's precision.
func einsum2(s Scope, eq string, a, b *Node) *Node {
	return inPrecision(s, func(a, b *Node) *Node { return Einsum(eq, a, b) }, a, b)
}
