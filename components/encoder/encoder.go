// Package encoder holds the encoders a spec can name under [encoder]: vit, the ViT of cae-facts 1.2. The
// method decides the mode: visible patches only (CAE, MAE) or all patches with a learned mask token in the
// masked places (BEiT).
package encoder

import (
	"fmt"

	. "github.com/gomlx/gomlx/core/graph"
	"mimlab/framework/registry"
	"mimlab/nn"
)

// Config is the [encoder] section.
type Config struct {
	Name       string  `toml:"name"`
	Dim        int     `toml:"dim"`
	Depth      int     `toml:"depth"`
	Heads      int     `toml:"heads"`
	MLPRatio   float64 `toml:"mlp_ratio"`
	LayerScale float64 `toml:"layer_scale"` // gamma init; 0 = no LayerScale
	DropPath   float64 `toml:"drop_path"`
}

// Validate checks the section (the image geometry is checked with [data]).
func (c *Config) Validate() error {
	if err := c.ViT(28, 4, 1).Validate(); err != nil {
		return fmt.Errorf("encoder.%w", err)
	}
	if c.LayerScale < 0 {
		return fmt.Errorf("encoder.layer_scale = %v: must be >= 0 (0 disables LayerScale)", c.LayerScale)
	}
	return nil
}

// ViT is the nn config for images of the given geometry.
func (c *Config) ViT(imageSize, patchSize, channels int) nn.ViTConfig {
	return nn.ViTConfig{ImageSize: imageSize, PatchSize: patchSize, Channels: channels, Dim: c.Dim, Depth: c.Depth,
		Heads: c.Heads, MLPRatio: c.MLPRatio, LayerScale: c.LayerScale, DropPath: c.DropPath}
}

// Encoder is a built encoder.
type Encoder struct{ Config }

// Encode runs the ViT under s ("encoder" scope is the caller's choice): in.Keep selects visible patches,
// in.Mask puts the mask token in masked places. Output [B, 1+K, D], cls first, after the final LayerNorm.
func (e Encoder) Encode(s nn.Scope, v nn.ViTConfig, in nn.ViTInput) *Node { return nn.ViT(s, v, in) }

// EncodeBlocks is Encode that also returns every block's output, before the final LayerNorm.
func (e Encoder) EncodeBlocks(s nn.Scope, v nn.ViTConfig, in nn.ViTInput) (*Node, []*Node) {
	return nn.ViTBlocks(s, v, in)
}

// Registry is the kind "encoder".
var Registry = registry.NewKind[Encoder]("encoder", "mimlab/components/encoder")

func init() {
	Registry.Register(registry.Entry[Encoder]{
		Name: "vit", Default: true, Doc: "pre-LN ViT with LayerScale, q/v bias, exact GELU, fixed 2-D sin-cos positions",
		NewConfig: func() registry.Config {
			return &Config{Name: "vit", Dim: 64, Depth: 4, Heads: 4, MLPRatio: 4, LayerScale: 0.1, DropPath: 0.1}
		},
		Build: func(c registry.Config) (Encoder, error) { return Encoder{*c.(*Config)}, nil },
	})
}
