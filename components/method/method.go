// Package method wires the components into a trainable model and names the loss, under [method]:
//
//   - cae: encoder on the visible patches -> Z_v; the regressor predicts Z_m from mask queries; the decoder
//     predicts the masked patches' targets from Z_m alone; the same encoder, without gradient (train mode,
//     its own drop path), encodes the masked patches as the alignment target.
//     loss = target loss + align_weight * MSE(Z_m, stopgrad(encoder(X_m)))  (cae-facts 1.1, 1.5, 1.6)
//   - beit: the encoder sees every patch, a learned mask token in the masked places; a linear head predicts
//     the masked patches' targets.
//   - mae: the encoder sees the visible patches; MAE's decoder (mask tokens at every masked place) predicts
//     the masked patches' pixels.
//   - supervised: a ViT with a linear head on the cls token, trained with the labels (the comparator of the
//     paper's Fig. 6).
//
// Each method reports its loss terms separately (target_loss, align_loss, token_acc, ...).
package method

import (
	"fmt"

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

// Config is the [method] section.
type Config struct {
	Name        string  `toml:"name"`
	AlignWeight float64 `toml:"align_weight"` // cae: lambda of the alignment loss (2 in the paper); 0 switches it off
}

// Validate checks the section.
func (c *Config) Validate() error {
	if c.AlignWeight < 0 {
		return fmt.Errorf("method.align_weight = %v: must be >= 0 (0 switches alignment off)", c.AlignWeight)
	}
	if c.Name != "cae" && c.AlignWeight != 0 {
		return fmt.Errorf("method.align_weight = %v: only method \"cae\" has an alignment loss", c.AlignWeight)
	}
	return nil
}

// Registry is the kind "method".
var Registry = registry.NewKind[Config]("method", "mimlab/components/method")

func init() {
	for _, e := range []struct {
		name, doc string
		align     float64
	}{
		{"cae", "Context Autoencoder: encoder on visible patches, latent regressor, decoder on Z_m, alignment loss", 2},
		{"beit", "BEiT: mask tokens inside the encoder, linear head on the masked positions", 0},
		{"mae", "MAE: encoder on visible patches, decoder over visible and mask tokens, pixel targets", 0},
		{"supervised", "a ViT trained with labels (linear head on the cls token)", 0},
	} {
		name, align := e.name, e.align
		Registry.Register(registry.Entry[Config]{
			Name: name, Doc: e.doc,
			NewConfig: func() registry.Config { return &Config{Name: name, AlignWeight: align} },
			Build:     func(c registry.Config) (Config, error) { return *c.(*Config), nil },
		})
	}
}

// Model is a method with its components, for one image geometry.
type Model struct {
	Method    Config
	ViT       nn.ViTConfig
	Encoder   encoder.Encoder
	Regressor *regressor.Regressor
	Decoder   decoder.Decoder
	Target    targets.Target // nil for supervised
	NumMasked int
	Classes   int
}

// Check validates the combination of components (each section was validated alone).
func (m *Model) Check() error {
	name := m.Method.Name
	switch name {
	case "cae":
		if m.Regressor == nil {
			return fmt.Errorf("method.name = \"cae\" needs regressor.name = \"cae\" (got \"none\")")
		}
		if m.Decoder.Name != "transformer" && m.Decoder.Name != "linear" {
			return fmt.Errorf("method.name = \"cae\": decoder.name = %q; allowed: transformer, linear (no decoder, the Table 5 ablation)", m.Decoder.Name)
		}
	case "beit":
		if m.Regressor != nil {
			return fmt.Errorf("method.name = \"beit\": regressor.name must be \"none\"")
		}
		if m.Decoder.Name != "linear" {
			return fmt.Errorf("method.name = \"beit\": decoder.name = %q; allowed: linear", m.Decoder.Name)
		}
	case "mae":
		if m.Regressor != nil {
			return fmt.Errorf("method.name = \"mae\": regressor.name must be \"none\"")
		}
		if m.Decoder.Name != "mae" {
			return fmt.Errorf("method.name = \"mae\": decoder.name = %q; allowed: mae", m.Decoder.Name)
		}
		if _, ok := m.Target.(targets.Pixel); !ok {
			return fmt.Errorf("method.name = \"mae\": targets.name must be \"pixel\"")
		}
	case "supervised":
		if m.Classes < 2 {
			return fmt.Errorf("method.name = \"supervised\" needs a labelled dataset")
		}
	}
	if name != "supervised" && (m.NumMasked < 1 || m.NumMasked >= m.ViT.NumPatches()) {
		return fmt.Errorf("masking.num_masked = %d: must be < %d patches (1..%d)", m.NumMasked, m.ViT.NumPatches(), m.ViT.NumPatches()-1)
	}
	return nil
}

// Discrete says whether the step needs tokens.
func (m *Model) Discrete() bool { return m.Target != nil && m.Target.Tokenizer() != nil }

// Data input order of a training step.
const (
	InImages = iota
	InVisible
	InMasked
	InMaskF
	InTokens // only when Discrete
)

// DataShapes are the shapes of a training step's data inputs for batch b: images, visible indices, masked
// indices, the [B,N] mask, then tokens (discrete targets) or labels (supervised).
func (m *Model) DataShapes(b int) []shapes.Shape {
	v := m.ViT
	img := shapes.Make(dtypes.Float32, b, v.Channels, v.ImageSize, v.ImageSize)
	if m.Method.Name == "supervised" {
		return []shapes.Shape{img, shapes.Make(dtypes.Int64, b)}
	}
	n, k := v.NumPatches(), m.NumMasked
	out := []shapes.Shape{img, shapes.Make(dtypes.Int64, b, n-k), shapes.Make(dtypes.Int64, b, k), shapes.Make(dtypes.Float32, b, n)}
	if m.Discrete() {
		out = append(out, shapes.Make(dtypes.Int64, b, n))
	}
	return out
}

// MetricNames name the metrics Loss returns, in order.
func (m *Model) MetricNames() []string {
	switch m.Method.Name {
	case "supervised":
		return []string{"train_acc"}
	case "cae":
		out := []string{"target_loss"}
		if m.Method.AlignWeight > 0 { // with alignment off nothing is computed, so nothing is reported
			out = append(out, "align_loss")
		}
		if m.Discrete() {
			out = append(out, "token_acc")
		}
		return out
	default:
		out := []string{"target_loss"}
		if m.Discrete() {
			out = append(out, "token_acc")
		}
		return out
	}
}

func (m *Model) targetInputs(patches *Node, in []*Node) targets.Inputs {
	ti := targets.Inputs{Patches: patches, Masked: in[InMasked]}
	if m.Discrete() {
		ti.Tokens = in[InTokens]
	}
	return ti
}

// DropCls removes the cls token (position 0) of x [B,1+K,D] with a gather (Slice has no gradient on ONNX
// Runtime).
func DropCls(x *Node) *Node {
	b, k := x.Shape().Dimensions[0], x.Shape().Dimensions[1]-1
	return nn.GatherTokens(x, AddScalar(Iota(x.Graph(), shapes.Make(dtypes.Int64, b, k), 1), 1))
}

// Loss is the training loss; metrics are named by MetricNames.
func (m *Model) Loss(s nn.Scope, in []*Node) (*Node, []*Node) {
	v := m.ViT
	patches := nn.Patchify(in[InImages], v.PatchSize)
	enc := s.Sub("encoder")
	switch m.Method.Name {
	case "supervised":
		z := m.Encoder.Encode(enc, v, nn.ViTInput{Patches: patches})
		cls := Reshape(nn.GatherTokens(z, Zeros(z.Graph(), shapes.Make(dtypes.Int64, z.Shape().Dimensions[0], 1))), z.Shape().Dimensions[0], v.Dim)
		logits := nn.LinearInit(s.Sub("head"), cls, m.Classes, true, nn.Init{Kind: nn.InitTruncNormal, Std: 0.02})
		labels := in[1]
		return nn.SoftmaxCrossEntropy(logits, labels), []*Node{nn.Accuracy(logits, labels)}
	case "beit":
		z := m.Encoder.Encode(enc, v, nn.ViTInput{Patches: patches, Mask: in[InMaskF]})
		zm := nn.GatherTokens(z, AddScalar(in[InMasked], 1))
		pred := m.Decoder.DecodeMasked(s.Sub("decoder"), zm, nil, v.Heads, m.Target.Dim())
		return m.targetLoss(pred, patches, in, nil)
	case "mae":
		z := m.Encoder.Encode(enc, v, nn.ViTInput{Patches: patches, Keep: in[InVisible]})
		pred := m.Decoder.DecodeMAE(s.Sub("decoder"), z, in[InVisible], in[InMaskF], in[InMasked], nn.PosTable(s, v.Grid(), v.Dim), v.Heads, m.Target.Dim())
		return m.targetLoss(pred, patches, in, nil)
	case "cae":
		zm, pm := m.Regress(s, patches, in)
		pred := m.Decoder.DecodeMasked(s.Sub("decoder"), zm, pm, v.Heads, m.Target.Dim())
		var align *Node
		if m.Method.AlignWeight > 0 {
			align = nn.MSE(zm, m.AlignTarget(s, patches, in[InMasked]))
		}
		return m.targetLoss(pred, patches, in, align)
	}
	panic(fmt.Errorf("unknown method %q", m.Method.Name))
}

func (m *Model) targetLoss(pred, patches *Node, in []*Node, align *Node) (*Node, []*Node) {
	tl, acc := m.Target.Loss(pred, m.targetInputs(patches, in))
	loss := tl
	metrics := []*Node{tl}
	if align != nil {
		loss = Add(loss, MulScalar(align, m.Method.AlignWeight))
		metrics = append(metrics, align)
	}
	if acc != nil {
		metrics = append(metrics, acc)
	}
	return loss, metrics
}

// Regress runs CAE's encoder on the visible patches and the regressor: it returns Z_m [B,M,D] (after the
// regressor's final LayerNorm) and the masked positions' embeddings P_m.
func (m *Model) Regress(s nn.Scope, patches *Node, in []*Node) (zm, pm *Node) {
	v := m.ViT
	zv := DropCls(m.Encoder.Encode(s.Sub("encoder"), v, nn.ViTInput{Patches: patches, Keep: in[InVisible]}))
	s.Capture("z_v", zv)
	pos := nn.PosTable(s, v.Grid(), v.Dim)
	pm = nn.GatherRows(pos, in[InMasked])
	pv := nn.GatherRows(pos, in[InVisible])
	b, k := pm.Shape().Dimensions[0], pm.Shape().Dimensions[1]
	q0 := BroadcastToDims(s.Param("mask_token", []int{1, 1, v.Dim}, nn.Init{Kind: nn.InitTruncNormal, Std: 0.02}), b, k, v.Dim)
	zm = m.Regressor.Regress(s.Sub("regressor"), q0, zv, pm, pv, v.Heads)
	s.Capture("z_m", zm)
	return zm, pm
}

// AlignTarget is the encoder's output on the masked patches, cls dropped, under StopGradient: the same
// parameters as the main encoder, in train mode with its own drop-path draws (cae-facts 1.5).
func (m *Model) AlignTarget(s nn.Scope, patches, masked *Node) *Node {
	z := m.Encoder.Encode(s.Sub("encoder").Branch("align"), m.ViT, nn.ViTInput{Patches: patches, Keep: masked})
	return StopGradient(DropCls(z))
}

// Features is the frozen encoder on every patch: [B,1+N,D] after the final LayerNorm (cls first), the input
// of the probes.
func (m *Model) Features(s nn.Scope, images *Node) *Node {
	return m.Encoder.Encode(s.Sub("encoder"), m.ViT, nn.ViTInput{Patches: nn.Patchify(images, m.ViT.PatchSize)})
}

// Reconstruct is the paper's Fig. 4 path for pixel-target CAE models: the encoder on the masked patches,
// the regressor skipped, the decoder on the encoder's outputs. It returns predictions [B,M,P].
func (m *Model) Reconstruct(s nn.Scope, images, masked *Node) *Node {
	patches := nn.Patchify(images, m.ViT.PatchSize)
	z := DropCls(m.Encoder.Encode(s.Sub("encoder"), m.ViT, nn.ViTInput{Patches: patches, Keep: masked}))
	pm := nn.GatherRows(nn.PosTable(s, m.ViT.Grid(), m.ViT.Dim), masked)
	return m.Decoder.DecodeMasked(s.Sub("decoder"), z, pm, m.ViT.Heads, m.Target.Dim())
}

// Predict is the normal masked prediction of a CAE model: regressor then decoder, [B,M,Dim].
func (m *Model) Predict(s nn.Scope, in []*Node) *Node {
	patches := nn.Patchify(in[InImages], m.ViT.PatchSize)
	zm, pm := m.Regress(s, patches, in)
	return m.Decoder.DecodeMasked(s.Sub("decoder"), zm, pm, m.ViT.Heads, m.Target.Dim())
}
