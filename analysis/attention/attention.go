// Package attention extracts attention maps from a trained encoder: the attention weights of any layer and
// head, and the paper's Fig. 6 map, the cls-to-patch attention of the last layer averaged over heads,
// upsampled to the image and overlaid on it.
package attention

import (
	"fmt"
	"image"
	"image/color"
	"math"

	"github.com/gomlx/compute"
	"github.com/gomlx/compute/dtypes"
	"github.com/gomlx/compute/shapes"
	. "github.com/gomlx/gomlx/core/graph"
	"github.com/gomlx/gomlx/core/tensors"
	"mimlab/nn"
)

// Encoder is what the maps need of a trained model.
type Encoder interface {
	Features(s nn.Scope, images *Node) *Node
}

// Weights returns the attention probabilities [B, H, 1+N, 1+N] of encoder block `layer` for images
// [B,C,S,S].
func Weights(be compute.Backend, enc Encoder, set *nn.ParamSet, params []*tensors.Tensor, images *tensors.Tensor, layer int) ([]float32, []int, error) {
	name := fmt.Sprintf("encoder.blocks.%d.attn.attn", layer)
	prog, err := nn.Compile(be, set, dtypes.Float32, false, []shapes.Shape{images.Shape()}, func(s nn.Scope, in []*Node) []*Node {
		return []*Node{enc.Features(s, in[0])}
	}, name)
	if err != nil {
		return nil, nil, err
	}
	defer prog.Finalize()
	out, err := prog.Run(params, nil, images)
	if err != nil {
		return nil, nil, err
	}
	defer nn.Free(out...)
	return nn.Float32s(out[1]), out[1].Shape().Dimensions, nil
}

// ClsMaps reduces attention weights [B,H,T,T] to the cls-to-patch maps averaged over heads: [B, N].
func ClsMaps(w []float32, dims []int) [][]float64 {
	b, h, t := dims[0], dims[1], dims[2]
	out := make([][]float64, b)
	for i := 0; i < b; i++ {
		m := make([]float64, t-1)
		for k := 0; k < h; k++ {
			row := w[((i*h+k)*t)*t:]
			for j := 1; j < t; j++ {
				m[j-1] += float64(row[j]) / float64(h)
			}
		}
		out[i] = m
	}
	return out
}

// Overlay draws a gray image (size x size, values in [0,1]) scaled by `scale` with a grid x grid map
// (normalised to [0,1]) upsampled bilinearly and blended in red-yellow on top.
func Overlay(img []float32, size int, m []float64, grid, scale int) *image.RGBA {
	mn, mx := math.Inf(1), math.Inf(-1)
	for _, v := range m {
		mn, mx = math.Min(mn, v), math.Max(mx, v)
	}
	out := image.NewRGBA(image.Rect(0, 0, size*scale, size*scale))
	for y := 0; y < size*scale; y++ {
		for x := 0; x < size*scale; x++ {
			// bilinear sample of the map at pixel centre
			fy := (float64(y)+0.5)/float64(size*scale)*float64(grid) - 0.5
			fx := (float64(x)+0.5)/float64(size*scale)*float64(grid) - 0.5
			y0, x0 := int(math.Floor(fy)), int(math.Floor(fx))
			dy, dx := fy-float64(y0), fx-float64(x0)
			at := func(yy, xx int) float64 {
				yy, xx = max(0, min(grid-1, yy)), max(0, min(grid-1, xx))
				return m[yy*grid+xx]
			}
			v := (1-dy)*((1-dx)*at(y0, x0)+dx*at(y0, x0+1)) + dy*((1-dx)*at(y0+1, x0)+dx*at(y0+1, x0+1))
			if mx > mn {
				v = (v - mn) / (mx - mn)
			}
			g := float64(img[(y/scale)*size+x/scale])
			r := 0.55*g + 0.45*v
			gg := 0.55*g + 0.45*v*v
			bb := 0.55 * g
			out.Set(x, y, color.RGBA{uint8(255 * clamp01(r)), uint8(255 * clamp01(gg)), uint8(255 * clamp01(bb)), 255})
		}
	}
	return out
}

func clamp01(v float64) float64 { return math.Max(0, math.Min(1, v)) }
