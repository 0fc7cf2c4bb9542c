// Package method wires the components into a trainable model and names the loss, under [method]. Each
// method is one file holding its config, its registration and its Method: which inputs a training step
// needs, what it checks of the components it is given, its metrics and its loss. The shipped ones:
// CAE (cae.go), BEiT (beit.go), MAE (mae.go), SimMIM (simmim.go), a supervised ViT (supervised.go), and
// the methods with an EMA teacher, I-JEPA (ijepa.go), data2vec (data2vec.go) and MoCo v3 (mocov3.go, which
// also asks for two views of each image). Extras are optional
// interfaces found by type assertion (Reconstructor: draws the paper's Fig. 4).
//
// Nothing outside a method's own file asks for a method by name.
package method

import (
	"fmt"
	"strings"

	"github.com/gomlx/compute/dtypes"
	"github.com/gomlx/compute/shapes"
	. "github.com/gomlx/gomlx/core/graph"
	"mimlab/components/decoder"
	"mimlab/components/encoder"
	"mimlab/components/regressor"
	"mimlab/components/targets"
	"mimlab/framework/registry"
	"mimlab/nn"
)

// Needs says which data a method's training step reads besides the images.
type Needs struct {
	Mask   bool // visible and masked indices and the [B,N] mask, drawn by the masking strategy
	Target bool // a target (and its host input, if it has one)
	Labels bool // the class labels
	// TwoViews: a second, independently augmented view of the same images (Inputs.Images2), for methods that
	// compare two views of an image (MoCo v3). The data loader draws it from its own seeded source.
	TwoViews bool
}

// Method is a pretraining (or supervised) method.
type Method interface {
	// Needs says which inputs a step has.
	Needs() Needs
	// Check validates the combination of components (each section was validated alone).
	Check(m *Model) error
	// MetricNames name the metrics Loss returns, in order.
	MetricNames(m *Model) []string
	// Loss is the training loss and its metrics.
	Loss(m *Model, s nn.Scope, in Inputs) (*Node, []*Node)
}

// Reconstructor is a method that can draw the paper's Fig. 4 (for pixel targets): its normal prediction
// for the masked patches [B,M,Dim] and a reconstruction from the encoder's own view of them.
type Reconstructor interface {
	Predict(m *Model, s nn.Scope, in Inputs) *Node
	Reconstruct(m *Model, s nn.Scope, images, masked *Node) *Node
	// ReconstructAll is Fig. 4 as the paper draws it: the encoder on the whole image (no mask), the regressor
	// skipped, the decoder on every patch's representation: predictions for all N patches [B,N,Dim].
	ReconstructAll(m *Model, s nn.Scope, images *Node) *Node
}

// Teacher is a method with an EMA copy of the encoder (Scope.EMA): TeacherPrefix is the copy's scope, whose
// parameters mirror "encoder." ones. eval.encoder = "teacher" evaluates it, and a trial exports it beside
// the encoder.
type Teacher interface {
	TeacherPrefix() string
}

// BatchCoupled is a method whose loss couples the samples of a batch (contrastive negatives, BatchNorm
// statistics): gradient accumulation would not give the large batch's step, so plan refuses
// train.accum_steps > 1 for it. Why says how.
type BatchCoupled interface {
	BatchCoupled() (why string)
}

// Registry is the kind "method".
var Registry = registry.NewKind[Method]("method", "mimlab/components/method")

// Model is a method with its components, for one image geometry.
type Model struct {
	Method    Method
	Name      string // the method's registered name, for records and messages
	ViT       nn.ViTConfig
	Encoder   encoder.Encoder
	Regressor *regressor.Regressor // nil: regressor "none"
	Decoder   decoder.Decoder
	Target    targets.Target // nil when the method needs none
	NumMasked int
	Classes   int
}

// Check validates the combination: the method's own checks and the mask count.
func (m *Model) Check() error {
	if err := m.Method.Check(m); err != nil {
		return err
	}
	if m.Method.Needs().Mask && (m.NumMasked < 1 || m.NumMasked >= m.ViT.NumPatches()) {
		return fmt.Errorf("masking.num_masked = %d: must be < %d patches (1..%d)", m.NumMasked, m.ViT.NumPatches(), m.ViT.NumPatches()-1)
	}
	return nil
}

// Data input order of a training step whose method needs masks: images, visible, masked, mask, then the
// target's host input (when it has one), then labels (when needed), then the second view (when needed).
// Without masks: images, then the rest. The second view comes last so the positions below hold for every
// method.
const (
	InImages = iota
	InVisible
	InMasked
	InMaskF
)

// Inputs are a step's data inputs by name.
type Inputs struct {
	Images  *Node // [B,C,S,S]
	Visible *Node // [B,N-M] int64
	Masked  *Node // [B,M] int64
	MaskF   *Node // [B,N] 1 = masked
	Host    *Node // the target's host input
	Labels  *Node // [B] int64
	Images2 *Node // [B,C,S,S], a second view of Images (Needs.TwoViews)
}

// HostInput is the target's host input, nil when it has none or the method needs no target.
func (m *Model) HostInput() targets.HostInput {
	if !m.Method.Needs().Target || m.Target == nil {
		return nil
	}
	h, _ := m.Target.(targets.HostInput)
	return h
}

// DataShapes are the shapes of a training step's data inputs for batch b, in the order above.
func (m *Model) DataShapes(b int) []shapes.Shape {
	v := m.ViT
	need := m.Method.Needs()
	out := []shapes.Shape{shapes.Make(dtypes.Float32, b, v.Channels, v.ImageSize, v.ImageSize)}
	n, k := v.NumPatches(), m.NumMasked
	if need.Mask {
		out = append(out, shapes.Make(dtypes.Int64, b, n-k), shapes.Make(dtypes.Int64, b, k), shapes.Make(dtypes.Float32, b, n))
	}
	if h := m.HostInput(); h != nil {
		out = append(out, h.InputShape(b, n))
	}
	if need.Labels {
		out = append(out, shapes.Make(dtypes.Int64, b))
	}
	if need.TwoViews {
		out = append(out, out[0])
	}
	return out
}

// Unpack names a step's data inputs (the order of DataShapes).
func (m *Model) Unpack(in []*Node) Inputs {
	need := m.Method.Needs()
	x := Inputs{Images: in[0]}
	i := 1
	if need.Mask {
		x.Visible, x.Masked, x.MaskF = in[InVisible], in[InMasked], in[InMaskF]
		i = InMaskF + 1
	}
	if m.HostInput() != nil {
		x.Host = in[i]
		i++
	}
	if need.Labels {
		x.Labels = in[i]
		i++
	}
	if need.TwoViews {
		x.Images2 = in[i]
	}
	return x
}

// MetricNames name the metrics Loss returns, in order.
func (m *Model) MetricNames() []string { return m.Method.MetricNames(m) }

// Loss is the training loss (the trainer's loss function); metrics are named by MetricNames.
func (m *Model) Loss(s nn.Scope, in []*Node) (*Node, []*Node) {
	return m.Method.Loss(m, s, m.Unpack(in))
}

// TargetInputs are what the target's loss reads.
func (m *Model) TargetInputs(patches *Node, in Inputs) targets.Inputs {
	return targets.Inputs{Patches: patches, Masked: in.Masked, Host: in.Host}
}

// TargetMetricNames are "target_loss", then extra (e.g. align_loss), then the target's own metrics.
func (m *Model) TargetMetricNames(extra ...string) []string {
	out := append([]string{"target_loss"}, extra...)
	return append(out, m.Target.MetricNames()...)
}

// TargetLoss is the target's loss on pred, plus weight x each extra term (in the order of
// TargetMetricNames).
func (m *Model) TargetLoss(pred, patches *Node, in Inputs, weight float64, extra ...*Node) (*Node, []*Node) {
	tl, tm := m.Target.Loss(pred, m.TargetInputs(patches, in))
	loss := tl
	metrics := []*Node{tl}
	for _, e := range extra {
		loss = Add(loss, MulScalar(e, weight))
		metrics = append(metrics, e)
	}
	return loss, append(metrics, tm...)
}

// NeedLatentDecoder returns the model's decoder as a Latent one, or an error listing the decoders that are.
func (m *Model) NeedLatentDecoder(headOnly bool) (decoder.Latent, error) {
	ok := func(d decoder.Decoder) bool {
		l, ok := d.(decoder.Latent)
		return ok && (!headOnly || l.HeadOnly())
	}
	if ok(m.Decoder) {
		return m.Decoder.(decoder.Latent), nil
	}
	return nil, fmt.Errorf("method.name = %q: decoder.name = %q; allowed: %s", m.Name, m.Decoder.Name(), strings.Join(decoder.Names(ok), ", "))
}

// NeedFullDecoder returns the model's decoder as a Full one (over visible and mask tokens at every place), or
// an error listing the decoders that are.
func (m *Model) NeedFullDecoder() (decoder.Full, error) {
	if f, ok := m.Decoder.(decoder.Full); ok {
		return f, nil
	}
	return nil, fmt.Errorf("method.name = %q: decoder.name = %q; allowed: %s", m.Name, m.Decoder.Name(),
		strings.Join(decoder.Names(func(d decoder.Decoder) bool { _, ok := d.(decoder.Full); return ok }), ", "))
}

// DropCls removes the cls token (position 0) of x [B,1+K,D] with a gather (Slice has no gradient on ONNX
// Runtime).
func DropCls(x *Node) *Node {
	b, k := x.Shape().Dimensions[0], x.Shape().Dimensions[1]-1
	return nn.GatherTokens(x, AddScalar(Iota(x.Graph(), shapes.Make(dtypes.Int64, b, k), 1), 1))
}

// Features is the frozen encoder on every patch: [B,1+N,D] after the final LayerNorm (cls first), the input
// of the probes.
func (m *Model) Features(s nn.Scope, images *Node) *Node {
	return m.Encoder.Encode(s.Sub("encoder"), m.ViT, nn.ViTInput{Patches: nn.Patchify(images, m.ViT.PatchSize)})
}
