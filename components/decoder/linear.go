package decoder

import (
	. "github.com/gomlx/gomlx/core/graph"
	"mimlab/framework/registry"
	"mimlab/nn"
)

// LinearConfig is [decoder] for name = "linear": a head and nothing else, so no keys.
type LinearConfig struct {
	Name string `toml:"name"`
}

// Validate checks the section.
func (c *LinearConfig) Validate() error { return nil }

func init() {
	Registry.Register(registry.Entry[Decoder]{
		Name: "linear", Doc: "a Linear head on the latents (BEiT's head; CAE without decoder, the Table 5 ablation)",
		NewConfig: func() registry.Config { return &LinearConfig{Name: "linear"} },
		Build:     func(registry.Config) (Decoder, error) { return Linear{}, nil },
	})
}

// Linear is a prediction head on the latents.
type Linear struct{}

// Name implements Decoder.
func (Linear) Name() string { return "linear" }

// HeadOnly implements Latent.
func (Linear) HeadOnly() bool { return true }

// DecodeMasked implements Latent.
func (Linear) DecodeMasked(s nn.Scope, zm, _ *Node, _, out int) *Node { return head(s, zm, out) }
