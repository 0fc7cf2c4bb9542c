package method

import (
	"fmt"

	. "github.com/gomlx/gomlx/core/graph"
	"mimlab/framework/registry"
	"mimlab/nn"
)

// CAE (Chen et al. 2022): encoder on the visible patches -> Z_v; the regressor predicts Z_m from mask
// queries; the decoder predicts the masked patches' targets from Z_m alone; the same encoder, without
// gradient (train mode, its own drop path), encodes the masked patches as the alignment target.
// loss = target loss + align_weight * MSE(Z_m, stopgrad(encoder(X_m)))  (cae-facts 1.1, 1.5, 1.6)

// CAEConfig is [method] for name = "cae".
type CAEConfig struct {
	Name        string  `toml:"name"`
	AlignWeight float64 `toml:"align_weight" doc:"lambda of the alignment loss (2 in the paper); 0 switches it off"`
}

// Validate checks the section.
func (c *CAEConfig) Validate() error {
	if c.AlignWeight < 0 || c.AlignWeight > 1e6 {
		return fmt.Errorf("method.align_weight = %v: must be in [0, 1e6] (0 switches alignment off)", c.AlignWeight)
	}
	return nil
}

func init() {
	Registry.Register(registry.Entry[Method]{
		Name: "cae", Default: true, Doc: "Context Autoencoder: encoder on visible patches, latent regressor, decoder on Z_m, alignment loss",
		NewConfig: func() registry.Config { return &CAEConfig{Name: "cae", AlignWeight: 2} },
		Build:     func(c registry.Config) (Method, error) { return CAE{*c.(*CAEConfig)}, nil },
	})
}

// CAE is the Context Autoencoder.
type CAE struct{ CAEConfig }

// Needs implements Method.
func (CAE) Needs() Needs { return Needs{Mask: true, Target: true} }

// Check implements Method.
func (c CAE) Check(m *Model) error {
	if m.Regressor == nil {
		return fmt.Errorf("method.name = \"cae\" needs regressor.name = \"cae\" (got \"none\")")
	}
	if _, err := m.NeedLatentDecoder(false); err != nil {
		return fmt.Errorf("%w (no decoder, the Table 5 ablation, is a linear head)", err)
	}
	return nil
}

// MetricNames implements Method: with alignment off nothing is computed, so nothing is reported.
func (c CAE) MetricNames(m *Model) []string {
	if c.AlignWeight > 0 {
		return m.TargetMetricNames("align_loss")
	}
	return m.TargetMetricNames()
}

// Loss implements Method.
func (c CAE) Loss(m *Model, s nn.Scope, in Inputs) (*Node, []*Node) {
	patches := nn.Patchify(in.Images, m.ViT.PatchSize)
	zm, pm := m.regress(s, patches, in.Visible, in.Masked)
	dec, _ := m.NeedLatentDecoder(false)
	pred := dec.DecodeMasked(s.Sub("decoder"), zm, pm, m.ViT.Heads, m.Target.Dim())
	if c.AlignWeight > 0 {
		return m.TargetLoss(pred, patches, in, c.AlignWeight, nn.MSE(zm, m.AlignTarget(s, patches, in.Masked)))
	}
	return m.TargetLoss(pred, patches, in, 0)
}

// Regress runs CAE's encoder on the visible patches and the regressor: it returns Z_m [B,M,D] (after the
// regressor's final LayerNorm) and the masked positions' embeddings P_m. in holds the step's data inputs.
func (m *Model) Regress(s nn.Scope, patches *Node, in []*Node) (zm, pm *Node) {
	return m.regress(s, patches, in[InVisible], in[InMasked])
}

func (m *Model) regress(s nn.Scope, patches, visible, masked *Node) (zm, pm *Node) {
	v := m.ViT
	zv := DropCls(m.Encoder.Encode(s.Sub("encoder"), v, nn.ViTInput{Patches: patches, Keep: visible}))
	s.Capture("z_v", zv)
	pos := nn.PosTable(s, v.Grid(), v.Dim)
	pm = nn.GatherRows(pos, masked)
	pv := nn.GatherRows(pos, visible)
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

// Reconstruct implements Reconstructor, the paper's Fig. 4 path: the encoder on the masked patches, the
// regressor skipped, the decoder on the encoder's outputs. It returns predictions [B,M,P].
func (CAE) Reconstruct(m *Model, s nn.Scope, images, masked *Node) *Node {
	patches := nn.Patchify(images, m.ViT.PatchSize)
	z := DropCls(m.Encoder.Encode(s.Sub("encoder"), m.ViT, nn.ViTInput{Patches: patches, Keep: masked}))
	pm := nn.GatherRows(nn.PosTable(s, m.ViT.Grid(), m.ViT.Dim), masked)
	dec, _ := m.NeedLatentDecoder(false)
	return dec.DecodeMasked(s.Sub("decoder"), z, pm, m.ViT.Heads, m.Target.Dim())
}

// ReconstructAll implements Reconstructor, Fig. 4 as the paper draws it: the encoder on every patch of the
// image, the regressor skipped, the decoder on all N patch representations with their positions.
func (CAE) ReconstructAll(m *Model, s nn.Scope, images *Node) *Node {
	z := DropCls(m.Encoder.Encode(s.Sub("encoder"), m.ViT, nn.ViTInput{Patches: nn.Patchify(images, m.ViT.PatchSize)}))
	b, n := z.Shape().Dimensions[0], z.Shape().Dimensions[1]
	pos := BroadcastToDims(ExpandAxes(nn.PosTable(s, m.ViT.Grid(), m.ViT.Dim), 0), b, n, m.ViT.Dim)
	dec, _ := m.NeedLatentDecoder(false)
	return dec.DecodeMasked(s.Sub("decoder"), z, pos, m.ViT.Heads, m.Target.Dim())
}

// Predict implements Reconstructor: the normal masked prediction, regressor then decoder, [B,M,Dim].
func (CAE) Predict(m *Model, s nn.Scope, in Inputs) *Node {
	patches := nn.Patchify(in.Images, m.ViT.PatchSize)
	zm, pm := m.regress(s, patches, in.Visible, in.Masked)
	dec, _ := m.NeedLatentDecoder(false)
	return dec.DecodeMasked(s.Sub("decoder"), zm, pm, m.ViT.Heads, m.Target.Dim())
}
