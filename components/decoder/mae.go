package decoder

import (
	"github.com/gomlx/compute/dtypes"
	"github.com/gomlx/compute/shapes"
	. "github.com/gomlx/gomlx/core/graph"
	"mimlab/framework/registry"
	"mimlab/nn"
)

// MAEConfig is [decoder] for name = "mae".
type MAEConfig struct {
	Name           string `toml:"name"`
	nn.StackConfig        // depth, heads, mlp_ratio, layer_scale, drop_path
}

// Validate checks the section.
func (c *MAEConfig) Validate() error { return c.StackConfig.Validate("decoder") }

func init() {
	Registry.Register(registry.Entry[Decoder]{
		Name: "mae", Doc: "MAE's decoder over visible tokens and mask tokens at every position",
		NewConfig: func() registry.Config {
			return &MAEConfig{Name: "mae", StackConfig: nn.StackConfig{Depth: 2, MLPRatio: 4, LayerScale: 0.1, DropPath: 0.1}}
		},
		Build: func(c registry.Config) (Decoder, error) { return MAE{stack{c.(*MAEConfig).StackConfig}}, nil },
	})
}

// MAE is MAE's decoder.
type MAE struct{ stack }

// Name implements Decoder.
func (MAE) Name() string { return "mae" }

// DecodeFull implements Full: MAE's decoder: encoder output z [B,1+Nv,D] (cls first), visible indices [B,Nv], the mask
// maskF [B,N] (1 = masked) and masked indices [B,M]; mask tokens fill the masked places, positions pos [N,D]
// are added at every place, the blocks see the whole sequence, and the predictions of the masked places are
// returned [B,M,out].
func (d MAE) DecodeFull(s nn.Scope, z, visible, maskF, masked, pos *Node, encoderHeads, out int) *Node {
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
