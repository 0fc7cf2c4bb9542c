package method

import (
	"fmt"

	. "github.com/gomlx/gomlx/core/graph"
	"mimlab/framework/registry"
	"mimlab/nn"
)

// BEiTConfig is [method] for name = "beit": no keys of its own.
type BEiTConfig struct {
	Name string `toml:"name"`
}

// Validate checks the section.
func (c *BEiTConfig) Validate() error { return nil }

func init() {
	Registry.Register(registry.Entry[Method]{
		Name: "beit", Doc: "BEiT: mask tokens inside the encoder, linear head on the masked positions",
		NewConfig: func() registry.Config { return &BEiTConfig{Name: "beit"} },
		Build:     func(registry.Config) (Method, error) { return BEiT{}, nil },
	})
}

// BEiT (Bao et al. 2022): the encoder sees every patch, a learned mask token in the masked places; a linear
// head predicts the masked patches' targets.
type BEiT struct{}

// Needs implements Method.
func (BEiT) Needs() Needs { return Needs{Mask: true, Target: true} }

// Check implements Method.
func (BEiT) Check(m *Model) error {
	if m.Regressor != nil {
		return fmt.Errorf("method.name = \"beit\": regressor.name must be \"none\"")
	}
	_, err := m.NeedLatentDecoder(true)
	return err
}

// MetricNames implements Method.
func (BEiT) MetricNames(m *Model) []string { return m.TargetMetricNames() }

// Loss implements Method.
func (BEiT) Loss(m *Model, s nn.Scope, in Inputs) (*Node, []*Node) {
	patches := nn.Patchify(in.Images, m.ViT.PatchSize)
	z := m.Encoder.Encode(s.Sub("encoder"), m.ViT, nn.ViTInput{Patches: patches, Mask: in.MaskF})
	zm := nn.GatherTokens(z, AddScalar(in.Masked, 1))
	dec, _ := m.NeedLatentDecoder(true)
	pred := dec.DecodeMasked(s.Sub("decoder"), zm, nil, m.ViT.Heads, m.Target.Dim())
	return m.TargetLoss(pred, patches, in, 0)
}
