package decoder

import (
	"fmt"

	. "github.com/gomlx/gomlx/core/graph"
	"mimlab/framework/registry"
	"mimlab/nn"
)

// TransformerConfig is [decoder] for name = "transformer".
type TransformerConfig struct {
	Name           string `toml:"name"`
	nn.StackConfig        // depth, heads, mlp_ratio, layer_scale, drop_path
}

// Validate checks the section.
func (c *TransformerConfig) Validate() error { return c.StackConfig.Validate("decoder") }

func init() {
	Registry.Register(registry.Entry[Decoder]{
		Name: "transformer", Default: true, Doc: "CAE's decoder: self-attention blocks over the masked tokens only (+ their positions), LayerNorm, head",
		NewConfig: func() registry.Config {
			return &TransformerConfig{Name: "transformer", StackConfig: nn.StackConfig{Depth: 2, MLPRatio: 4, LayerScale: 0.1, DropPath: 0.1}}
		},
		Build: func(c registry.Config) (Decoder, error) {
			return Transformer{stack{c.(*TransformerConfig).StackConfig}}, nil
		},
	})
}

// Transformer is CAE's decoder.
type Transformer struct{ stack }

// Name implements Decoder.
func (Transformer) Name() string { return "transformer" }

// HeadOnly implements Latent.
func (Transformer) HeadOnly() bool { return false }

// DecodeMasked implements Latent: blocks over Z_m + P_m, LayerNorm, head.
func (d Transformer) DecodeMasked(s nn.Scope, zm, pm *Node, encoderHeads, out int) *Node {
	if pm == nil {
		panic(fmt.Errorf("decoder transformer needs the masked positions"))
	}
	return head(s, d.blocks(s, Add(zm, pm), encoderHeads), out)
}
