// Package decoder holds the decoders a spec can name under [decoder]: transformer (CAE's: self-attention
// over the masked tokens only plus their position embedding, LayerNorm, head; it never sees the visible
// patches), linear (a head on the latents: BEiT's head, and CAE without decoder for the Table 5 ablation),
// mae (MAE's decoder over the visible tokens and mask tokens at every position), and whatever else is
// registered. Each decoder is one file. What a decoder can decode is said by the interfaces it implements
// (Latent, Full); a method asks for the one it needs.
package decoder

import (
	"sort"

	. "github.com/gomlx/gomlx/core/graph"
	"mimlab/framework/registry"
	"mimlab/nn"
)

// Decoder is a built decoder; what it can do is said by Latent and Full.
type Decoder interface {
	// Name is the registered name, for messages.
	Name() string
}

// Latent predicts targets [B,M,out] from the latents of the masked patches zm [B,M,D] and their positions
// pm (nil when the method has none): nothing it is given can see visible patches.
type Latent interface {
	Decoder
	DecodeMasked(s nn.Scope, zm, pm *Node, encoderHeads, out int) *Node
	// HeadOnly says it is a prediction head and nothing more (BEiT's).
	HeadOnly() bool
}

// Full predicts the masked places from the encoder's output on the visible tokens, MAE-style: z [B,1+Nv,D]
// (cls first), visible indices [B,Nv], maskF [B,N] (1 = masked), masked indices [B,M], positions [N,D].
type Full interface {
	Decoder
	DecodeFull(s nn.Scope, z, visible, maskF, masked, pos *Node, encoderHeads, out int) *Node
}

// Registry is the kind "decoder".
var Registry = registry.NewKind[Decoder]("decoder", "mimlab/components/decoder")

// Names lists the registered decoders (built from their defaults) for which ok is true: the allowed values
// in a method's error.
func Names(ok func(Decoder) bool) []string {
	var out []string
	for _, n := range Registry.Names() {
		cfg, err := Registry.New(n)
		if err != nil {
			continue
		}
		if d, err := Registry.Build(n, cfg); err == nil && ok(d) {
			out = append(out, n)
		}
	}
	sort.Strings(out)
	return out
}

// stack is the self-attention blocks and final LayerNorm shared by the transformer and MAE decoders.
type stack struct{ nn.StackConfig }

func (d stack) blocks(s nn.Scope, x *Node, encoderHeads int) *Node {
	for i, bc := range d.Blocks(encoderHeads) {
		x = nn.Block(s.Subf("blocks.%d", i), x, bc)
	}
	return nn.LayerNorm(s.Sub("norm"), x)
}

// head is the prediction Linear (trunc-normal 0.02 as mmselfsup's head; bias 0).
func head(s nn.Scope, x *Node, out int) *Node {
	return nn.LinearInit(s.Sub("head"), x, out, true, nn.Init{Kind: nn.InitTruncNormal, Std: 0.02})
}
