// Package regressor holds the latent regressors a spec can name under [regressor]: cae (the latent
// contextual regressor of cae-facts 1.3: cross-attention blocks whose queries are the mask queries and whose
// keys/values are the visible latents plus the queries; the visible latents are never updated) and none.
package regressor

import (
	"fmt"

	. "github.com/gomlx/gomlx/core/graph"
	"mimlab/framework/registry"
	"mimlab/nn"
)

// Config is [regressor] for name = "cae". Its width is the encoder's (CAE's decoder_embed_dim = D).
type Config struct {
	Name           string `toml:"name"`
	nn.StackConfig        // depth, heads, mlp_ratio, layer_scale, drop_path
}

// Validate checks the section.
func (c *Config) Validate() error {
	if c.Depth < 1 {
		return fmt.Errorf("regressor.depth = %d: must be >= 1 (or regressor.name = \"none\")", c.Depth)
	}
	return c.StackConfig.Validate("regressor")
}

// NoneConfig is [regressor] for name = "none": no regressor, so no keys.
type NoneConfig struct {
	Name string `toml:"name"`
}

// Validate checks the section.
func (c *NoneConfig) Validate() error { return nil }

// Regressor is a built regressor; a nil *Regressor is "none".
type Regressor struct{ Config }

// Regress predicts Z_m [B,M,D] from the mask queries q0 [B,M,D], the visible latents zv [B,Nv,D] and the
// position embeddings pm, pv: depth RegressorBlocks, then the final LayerNorm (whose output is both the
// alignment prediction and the decoder input).
func (r *Regressor) Regress(s nn.Scope, q0, zv, pm, pv *Node, encoderHeads int) *Node {
	x := q0
	for i, bc := range r.Blocks(encoderHeads) {
		x = nn.RegressorBlock(s.Subf("blocks.%d", i), x, zv, pm, pv, bc)
	}
	return nn.LayerNorm(s.Sub("norm"), x)
}

// Registry is the kind "regressor".
var Registry = registry.NewKind[*Regressor]("regressor", "mimlab/components/regressor")

func init() {
	Registry.Register(registry.Entry[*Regressor]{
		Name: "cae", Default: true, Doc: "CAE's latent contextual regressor (cross-attention blocks, Z_v never updated)",
		NewConfig: func() registry.Config {
			return &Config{Name: "cae", StackConfig: nn.StackConfig{Depth: 2, MLPRatio: 4, LayerScale: 0.1, DropPath: 0.1}}
		},
		Build: func(c registry.Config) (*Regressor, error) { return &Regressor{*c.(*Config)}, nil },
	})
	Registry.Register(registry.Entry[*Regressor]{
		Name: "none", Doc: "no regressor (BEiT, MAE)",
		NewConfig: func() registry.Config { return &NoneConfig{Name: "none"} },
		Build:     func(registry.Config) (*Regressor, error) { return nil, nil },
	})
}
