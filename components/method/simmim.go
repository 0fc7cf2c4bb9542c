package method

import (
	"fmt"

	. "github.com/gomlx/gomlx/core/graph"
	"mimlab/components/targets"
	"mimlab/framework/registry"
	"mimlab/nn"
)

// SimMIM (Xie et al. 2022): the encoder sees every patch, a learned mask token in the masked places (as
// BEiT); a single linear layer on each masked token predicts that patch's target values (raw pixels in the
// paper); the loss is L1 over the masked patches only. Its masking is random masking of large square mask
// units (masking.name = "square"), but any strategy can be named.

// SimMIMConfig is [method] for name = "simmim": no keys of its own.
type SimMIMConfig struct {
	Name string `toml:"name"`
}

// Validate checks the section.
func (c *SimMIMConfig) Validate() error { return nil }

func init() {
	Registry.Register(registry.Entry[Method]{
		Name: "simmim", Doc: "SimMIM: mask tokens inside the encoder, one linear layer predicts the masked patches' values, L1 loss",
		NewConfig: func() registry.Config { return &SimMIMConfig{Name: "simmim"} },
		Build:     func(registry.Config) (Method, error) { return SimMIM{}, nil },
	})
}

// SimMIM is the method.
type SimMIM struct{}

// Needs implements Method.
func (SimMIM) Needs() Needs { return Needs{Mask: true, Target: true} }

// Check implements Method: no regressor, a linear head, and targets that are values (pixels, HOG), not tokens.
func (SimMIM) Check(m *Model) error {
	if m.Regressor != nil {
		return fmt.Errorf("method.name = \"simmim\": regressor.name must be \"none\"")
	}
	if _, err := m.NeedLatentDecoder(true); err != nil {
		return err
	}
	if _, ok := m.Target.(targets.Regression); !ok {
		return fmt.Errorf("method.name = \"simmim\": its L1 loss needs targets that are values (pixels, features), not tokens")
	}
	return nil
}

// MetricNames implements Method: the L1 loss is the target loss.
func (SimMIM) MetricNames(*Model) []string { return []string{"target_loss"} }

// Loss implements Method.
func (SimMIM) Loss(m *Model, s nn.Scope, in Inputs) (*Node, []*Node) {
	patches := nn.Patchify(in.Images, m.ViT.PatchSize)
	z := m.Encoder.Encode(s.Sub("encoder"), m.ViT, nn.ViTInput{Patches: patches, Mask: in.MaskF})
	zm := nn.GatherTokens(z, AddScalar(in.Masked, 1)) // +1: skip cls
	dec, _ := m.NeedLatentDecoder(true)
	pred := dec.DecodeMasked(s.Sub("decoder"), zm, nil, m.ViT.Heads, m.Target.Dim())
	values := StopGradient(m.Target.(targets.Regression).Values(m.TargetInputs(patches, in)))
	l1 := ReduceAllMean(Abs(Sub(pred, values)))
	return l1, []*Node{l1}
}
