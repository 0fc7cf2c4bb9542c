package method

import (
	"fmt"

	. "github.com/gomlx/gomlx/core/graph"
	"mimlab/framework/registry"
	"mimlab/nn"
)

// MAEConfig is [method] for name = "mae": no keys of its own.
type MAEConfig struct {
	Name string `toml:"name"`
}

// Validate checks the section.
func (c *MAEConfig) Validate() error { return nil }

func init() {
	Registry.Register(registry.Entry[Method]{
		Name: "mae", Doc: "MAE: encoder on visible patches, decoder over visible and mask tokens",
		NewConfig: func() registry.Config { return &MAEConfig{Name: "mae"} },
		Build:     func(registry.Config) (Method, error) { return MAE{}, nil },
	})
}

// MAE (He et al. 2022): the encoder sees the visible patches; a decoder over the visible tokens and mask
// tokens at every place predicts the masked patches' targets (pixels in the paper).
type MAE struct{}

// Needs implements Method.
func (MAE) Needs() Needs { return Needs{Mask: true, Target: true} }

// Check implements Method.
func (MAE) Check(m *Model) error {
	if m.Regressor != nil {
		return fmt.Errorf("method.name = \"mae\": regressor.name must be \"none\"")
	}
	_, err := m.NeedFullDecoder()
	return err
}

// MetricNames implements Method.
func (MAE) MetricNames(m *Model) []string { return m.TargetMetricNames() }

// Loss implements Method.
func (MAE) Loss(m *Model, s nn.Scope, in Inputs) (*Node, []*Node) {
	v := m.ViT
	patches := nn.Patchify(in.Images, v.PatchSize)
	z := m.Encoder.Encode(s.Sub("encoder"), v, nn.ViTInput{Patches: patches, Keep: in.Visible})
	dec, _ := m.NeedFullDecoder() // Check made sure
	pred := dec.DecodeFull(s.Sub("decoder"), z, in.Visible, in.MaskF, in.Masked, nn.PosTable(s, v.Grid(), v.Dim), v.Heads, m.Target.Dim())
	return m.TargetLoss(pred, patches, in, 0)
}
