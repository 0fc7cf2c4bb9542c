package nn

import (
	"fmt"
	"strings"

	. "github.com/gomlx/gomlx/core/graph"
	"github.com/gomlx/gomlx/core/tensors"
)

// ViTConfig sizes a ViT encoder.
type ViTConfig struct {
	ImageSize, PatchSize, Channels int
	Dim, Depth, Heads              int
	MLPRatio                       float64
	LayerScale                     float64 // gamma init (0.1 in CAE ViT-B); 0 disables LayerScale
	DropPath                       float64 // stochastic depth, linspace(0, DropPath, Depth)
}

// Grid is the number of patches per side.
func (c ViTConfig) Grid() int { return c.ImageSize / c.PatchSize }

// NumPatches is Grid squared.
func (c ViTConfig) NumPatches() int { return c.Grid() * c.Grid() }

// PatchDim is C*p*p.
func (c ViTConfig) PatchDim() int { return c.Channels * c.PatchSize * c.PatchSize }

// Validate checks the sizes.
func (c ViTConfig) Validate() error {
	switch {
	case c.PatchSize <= 0 || c.ImageSize <= 0 || c.ImageSize%c.PatchSize != 0:
		return fmt.Errorf("patch_size %d must divide image_size %d", c.PatchSize, c.ImageSize)
	case c.Dim <= 0 || c.Dim%4 != 0:
		return fmt.Errorf("dim = %d: must be a positive multiple of 4 (the 2-D sin-cos table)", c.Dim)
	case c.Heads <= 0 || c.Dim%c.Heads != 0:
		return fmt.Errorf("heads = %d: must divide dim %d", c.Heads, c.Dim)
	case c.Depth < 1:
		return fmt.Errorf("depth = %d: must be >= 1", c.Depth)
	case c.MLPRatio <= 0:
		return fmt.Errorf("mlp_ratio = %v: must be > 0", c.MLPRatio)
	case c.DropPath < 0 || c.DropPath >= 1:
		return fmt.Errorf("drop_path = %v: must be in [0, 1)", c.DropPath)
	}
	return nil
}

// DropPathRates is linspace(0, max, n), the per-block stochastic depth of BEiT/CAE.
func DropPathRates(max float64, n int) []float64 {
	out := make([]float64, n)
	for i := range out {
		if n > 1 {
			out[i] = max * float64(i) / float64(n-1)
		}
	}
	return out
}

// ViTInput says which tokens the encoder sees.
type ViTInput struct {
	Patches *Node // [B, N, C*p*p], every patch of the image
	Keep    *Node // optional [B, K] int64: encode only these patches (CAE, MAE); nil = all
	Mask    *Node // optional [B, N] float (1 = masked): replace those by the mask token (BEiT)
}

// ViT encodes patches into [B, 1+K, D] tokens (cls first) after the final LayerNorm (cae-facts 1.2): patch
// embedding, the selected patches' fixed sin-cos positions (cls position zero), blocks, norm. Parameter
// names follow timm (patch_embed.proj, cls_token, blocks.i.*, norm) under s.
func ViT(s Scope, c ViTConfig, in ViTInput) *Node {
	out, _ := ViTBlocks(s, c, in)
	return out
}

// ViTBlocks is ViT that also returns every block's output [B, 1+K, D] (before the final LayerNorm), in
// order: data2vec's targets average the top K of them.
func ViTBlocks(s Scope, c ViTConfig, in ViTInput) (*Node, []*Node) {
	x := PatchEmbed(s.Sub("patch_embed.proj"), in.Patches, c.Dim, c.Channels, c.PatchSize)
	b := x.Shape().Dimensions[0]
	pos := BroadcastToDims(ExpandAxes(PosTable(s, c.Grid(), c.Dim), 0), b, c.NumPatches(), c.Dim)
	s.Capture("patch_tokens", x)
	if in.Mask != nil {
		tok := s.Param("mask_token", []int{1, 1, c.Dim}, Init{Kind: InitTruncNormal, Std: 0.02})
		w := ExpandAxes(ConvertDType(in.Mask, x.DType()), -1)
		x = Add(Mul(x, OneMinus(w)), Mul(tok, w))
		s.Capture("masked_tokens", x)
	}
	if in.Keep != nil {
		x = GatherTokens(x, in.Keep)
		pos = GatherTokens(pos, in.Keep)
	}
	x = Add(x, pos)
	cls := s.Param("cls_token", []int{1, 1, c.Dim}, Init{Kind: InitTruncNormal, Std: 0.02})
	x = Concatenate([]*Node{BroadcastToDims(cls, b, 1, c.Dim), x}, 1)
	rates := DropPathRates(c.DropPath, c.Depth)
	blocks := make([]*Node, c.Depth)
	for i := 0; i < c.Depth; i++ {
		x = Block(s.Subf("blocks.%d", i), x, BlockConfig{Heads: c.Heads, MLPRatio: c.MLPRatio, LayerScale: c.LayerScale, DropPath: rates[i]})
		blocks[i] = x
	}
	return LayerNorm(s.Sub("norm"), x), blocks
}

// ToArrays turns parameter tensors into named arrays, fusing each self-attention's q/k/v weights into
// timm's attn.qkv.weight [3D, D]. prefix selects parameters (and is stripped); "" takes all.
func ToArrays(ps *ParamSet, params []*tensors.Tensor, prefix string) map[string]Array {
	out := map[string]Array{}
	for i, spec := range ps.Params {
		name, ok := strings.CutPrefix(spec.Name, prefix)
		if !ok {
			continue
		}
		out[name] = Array{Shape: append([]int(nil), spec.Dims...), F32: Float32s(params[i])}
	}
	for name := range out {
		base, ok := strings.CutSuffix(name, "attn.q.weight")
		if !ok || strings.HasSuffix(base, "cross_") {
			continue
		}
		q, k, v := out[base+"attn.q.weight"], out[base+"attn.k.weight"], out[base+"attn.v.weight"]
		if k.F32 == nil || v.F32 == nil {
			continue
		}
		d := q.Shape[0]
		fused := append(append(append([]float32{}, q.F32...), k.F32...), v.F32...)
		out[base+"attn.qkv.weight"] = Array{Shape: []int{3 * d, q.Shape[1]}, F32: fused}
		delete(out, base+"attn.q.weight")
		delete(out, base+"attn.k.weight")
		delete(out, base+"attn.v.weight")
	}
	return out
}

// FromArrays fills parameter tensors (of the set's order) from named arrays in ToArrays' layout (timm names,
// fused qkv). Every parameter under prefix must be present with the right shape; the error lists what is
// missing.
func FromArrays(ps *ParamSet, arrays map[string]Array, prefix string, params []*tensors.Tensor) error {
	// Split fused qkv back into q, k, v.
	split := map[string]Array{}
	for name, a := range arrays {
		base, ok := strings.CutSuffix(name, "attn.qkv.weight")
		if !ok {
			split[name] = a
			continue
		}
		if len(a.Shape) != 2 || a.Shape[0]%3 != 0 {
			return fmt.Errorf("%s: shape %v is not [3D, D]", name, a.Shape)
		}
		d := a.Shape[0] / 3
		n := d * a.Shape[1]
		for j, part := range []string{"q", "k", "v"} {
			split[base+"attn."+part+".weight"] = Array{Shape: []int{d, a.Shape[1]}, F32: a.F32[j*n : (j+1)*n]}
		}
	}
	var missing []string
	for i, spec := range ps.Params {
		name, ok := strings.CutPrefix(spec.Name, prefix)
		if !ok {
			continue
		}
		a, ok := split[name]
		if !ok {
			missing = append(missing, name)
			continue
		}
		if a.Size() != spec.Size() || len(a.Shape) != len(spec.Dims) {
			return fmt.Errorf("%s: shape %v, the model wants %v", name, a.Shape, spec.Dims)
		}
		for j := range a.Shape {
			if a.Shape[j] != spec.Dims[j] {
				return fmt.Errorf("%s: shape %v, the model wants %v", name, a.Shape, spec.Dims)
			}
		}
		params[i] = TensorOf(params[i].DType(), a.F32, spec.Dims...)
	}
	if len(missing) > 0 {
		return fmt.Errorf("weights lack %d parameters: %s", len(missing), strings.Join(missing, ", "))
	}
	return nil
}

// StackConfig sizes a stack of transformer blocks at the encoder's width (CAE's regressor and decoder).
// Component configs embed it, so its keys sit directly in their spec sections.
type StackConfig struct {
	Depth      int     `toml:"depth"`
	Heads      int     `toml:"heads"` // 0 = the encoder's
	MLPRatio   float64 `toml:"mlp_ratio"`
	LayerScale float64 `toml:"layer_scale"`
	DropPath   float64 `toml:"drop_path"`
}

// Validate checks the stack's keys; section names the spec section in messages.
func (c StackConfig) Validate(section string) error {
	switch {
	case c.Depth < 1:
		return fmt.Errorf("%s.depth = %d: must be >= 1", section, c.Depth)
	case c.Heads < 0:
		return fmt.Errorf("%s.heads = %d: must be >= 0 (0 = the encoder's)", section, c.Heads)
	case c.MLPRatio <= 0:
		return fmt.Errorf("%s.mlp_ratio = %v: must be > 0", section, c.MLPRatio)
	case c.DropPath < 0 || c.DropPath >= 1:
		return fmt.Errorf("%s.drop_path = %v: must be in [0, 1)", section, c.DropPath)
	case c.LayerScale < 0:
		return fmt.Errorf("%s.layer_scale = %v: must be >= 0", section, c.LayerScale)
	}
	return nil
}

// Blocks returns each block's config: drop path linspace(0, DropPath, Depth), heads defaulting to the
// encoder's.
func (c StackConfig) Blocks(encoderHeads int) []BlockConfig {
	heads := c.Heads
	if heads == 0 {
		heads = encoderHeads
	}
	out := make([]BlockConfig, c.Depth)
	for i, r := range DropPathRates(c.DropPath, c.Depth) {
		out[i] = BlockConfig{Heads: heads, MLPRatio: c.MLPRatio, LayerScale: c.LayerScale, DropPath: r}
	}
	return out
}
