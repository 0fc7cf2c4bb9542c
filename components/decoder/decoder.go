// Package decoder holds the decoders a spec can name under [decoder]: transformer (CAE's: self-attention
// over the masked tokens only plus their position embedding, LayerNorm, head; it never sees the visible
// patches), linear (a head on the latents: BEiT's head, and CAE without decoder for the Table 5 ablation)
// and mae (MAE's decoder over the visible tokens and mask tokens at every position).
package decoder

import (
	"fmt"

	"github.com/gomlx/compute/dtypes"
	"github.com/gomlx/compute/shapes"
	. "github.com/gomlx/gomlx/core/graph"
	"mimlab/framework/registry"
	"mimlab/nn"
)

// Config is the [decoder] section. Its width is the encoder's.
type Config struct {
	Name           string `toml:"name"`
	nn.StackConfig        // depth, heads, mlp_ratio, layer_scale, drop_path
}

// Validate checks the section.
func (c *Config) Validate() error {
	if c.Name == "linear" {
		return nil
	}
	if c.Depth < 1 {
		return fmt.Errorf("decoder.depth = %d: must be >= 1 for %s (or decoder.name = \"linear\")", c.Depth, c.Name)
	}
	return c.StackConfig.Validate("decoder")
}

// Decoder is a built decoder.
type Decoder struct{ Config }

func (d Decoder) blocks(s nn.Scope, x *Node, encoderHeads int) *Node {
	for i, bc := range d.Blocks(encoderHeads) {
		x = nn.Block(s.Subf("blocks.%d", i), x, bc)
	}
	return nn.LayerNorm(s.Sub("norm"), x)
}

// head is the prediction Linear (trunc-normal 0.02 as mmselfsup's head; bias 0).
func head(s nn.Scope, x *Node, out int) *Node {
	return nn.LinearInit(s.Sub("head"), x, out, true, nn.Init{Kind: nn.InitTruncNormal, Std: 0.02})
}

// DecodeMasked predicts targets [B,M,out] from latents of the masked patches zm [B,M,D] and their positions
// pm: the CAE decoder (transformer) or a head alone (linear). Nothing here can see visible patches.
func (d Decoder) DecodeMasked(s nn.Scope, zm, pm *Node, encoderHeads, out int) *Node {
	switch d.Name {
	case "linear":
		return head(s, zm, out)
	case "transformer":
		return head(s, d.blocks(s, Add(zm, pm), encoderHeads), out)
	}
	panic(fmt.Errorf("decoder %q cannot decode masked latents alone (use transformer or linear)", d.Name))
}

// DecodeMAE is MAE's decoder: encoder output z [B,1+Nv,D] (cls first), visible indices [B,Nv], the mask
// maskF [B,N] (1 = masked) and masked indices [B,M]; mask tokens fill the masked places, positions pos [N,D]
// are added at every place, the blocks see the whole sequence, and the predictions of the masked places are
// returned [B,M,out].
func (d Decoder) DecodeMAE(s nn.Scope, z, visible, maskF, masked, pos *Node, encoderHeads, out int) *Node {
	b, dim := z.Shape().Dimensions[0], z.Shape().Dimensions[2]
	n, nv := maskF.Shape().Dimensions[1], visible.Shape().Dimensions[1]
	g := z.Graph()
	x := nn.Linear(s.Sub("decoder_embed"), z, dim, true)
	cls := nn.GatherTokens(x, Zeros(g, shapes.Make(dtypes.Int64, b, 1)))
	tok := nn.GatherTokens(x, AddScalar(Iota(g, shapes.Make(dtypes.Int64, b, nv), 1), 1))
	mt := s.Param("mask_token", []int{1, 1, dim}, nn.Init{Kind: nn.InitTruncNormal, Std: 0.02})
	full := Add(nn.ScatterTokens(tok, visible, n), Mul(ExpandAxes(maskF, -1), mt))
	full = Add(full, ExpandAxes(pos, 0))
	seq := d.blocks(s, Concatenate([]*Node{cls, full}, 1), encoderHeads)
	seq = nn.GatherTokens(seq, AddScalar(masked, 1)) // +1: skip cls
	return head(s, seq, out)
}

// Registry is the kind "decoder".
var Registry = registry.NewKind[Decoder]("decoder", "mimlab/components/decoder")

func init() {
	for _, e := range []struct{ name, doc string }{
		{"transformer", "CAE's decoder: self-attention blocks over the masked tokens only (+ their positions), LayerNorm, head"},
		{"linear", "a Linear head on the latents (BEiT's head; CAE without decoder, the Table 5 ablation)"},
		{"mae", "MAE's decoder over visible tokens and mask tokens at every position"},
	} {
		name := e.name
		Registry.Register(registry.Entry[Decoder]{
			Name: name, Doc: e.doc,
			NewConfig: func() registry.Config {
				c := &Config{Name: name, StackConfig: nn.StackConfig{Depth: 2, MLPRatio: 4, LayerScale: 0.1, DropPath: 0.1}}
				if name == "linear" {
					c.Depth = 0
				}
				return c
			},
			Build: func(c registry.Config) (Decoder, error) { return Decoder{*c.(*Config)}, nil },
		})
	}
}
