// Package recon renders the paper's Fig. 4 for pixel-target CAE models: for each image the input, the
// masked input, the normal masked prediction (encoder on visible patches -> regressor -> decoder) and the
// reconstruction with the regressor skipped (the encoder run on the masked patches, its outputs given to the
// decoder directly). Good reconstructions on the last path mean the regressor's outputs live in the
// encoder's representation space.
package recon

import (
	"image"
	"image/color"
	"math"
)

// Patch geometry of the images (single-channel or RGB, C x S x S, values in [0,1] after denormalising).
type Geometry struct {
	Channels, Size, Patch int
}

func (g Geometry) grid() int { return g.Size / g.Patch }

// Paste writes predicted patches pred [M, C*p*p] (patch order c,i,j) at the masked indices of img (a copy
// is returned). When normalized, each prediction is mapped back with the true patch's mean and std
// (MAE's visualisation of norm_pix targets).
func (g Geometry) Paste(img []float32, masked []int64, pred []float32, normalized bool) []float32 {
	out := append([]float32(nil), img...)
	pd := g.Channels * g.Patch * g.Patch
	for k, idx := range masked {
		py, px := int(idx)/g.grid(), int(idx)%g.grid()
		p := pred[k*pd : (k+1)*pd]
		mean, std := 0.0, 1.0
		if normalized {
			var s, sq float64
			for c := 0; c < g.Channels; c++ {
				for y := 0; y < g.Patch; y++ {
					for x := 0; x < g.Patch; x++ {
						v := float64(img[(c*g.Size+py*g.Patch+y)*g.Size+px*g.Patch+x])
						s += v
						sq += v * v
					}
				}
			}
			mean = s / float64(pd)
			std = math.Sqrt(math.Max(sq/float64(pd)-mean*mean, 0) + 1e-6)
		}
		i := 0
		for c := 0; c < g.Channels; c++ {
			for y := 0; y < g.Patch; y++ {
				for x := 0; x < g.Patch; x++ {
					out[(c*g.Size+py*g.Patch+y)*g.Size+px*g.Patch+x] = float32(float64(p[i])*std + mean)
					i++
				}
			}
		}
	}
	return out
}

// Blank greys out the masked patches.
func (g Geometry) Blank(img []float32, masked []int64) []float32 {
	out := append([]float32(nil), img...)
	for _, idx := range masked {
		py, px := int(idx)/g.grid(), int(idx)%g.grid()
		for c := 0; c < g.Channels; c++ {
			for y := 0; y < g.Patch; y++ {
				for x := 0; x < g.Patch; x++ {
					out[(c*g.Size+py*g.Patch+y)*g.Size+px*g.Patch+x] = 0.5
				}
			}
		}
	}
	return out
}

// Grid draws rows x cols images (each C x S x S in [0,1]) scaled by scale with a 2-pixel gap.
func (g Geometry) Grid(rows [][][]float32, scale int) *image.RGBA {
	nr, nc := len(rows), len(rows[0])
	cell := g.Size*scale + 2
	out := image.NewRGBA(image.Rect(0, 0, nc*cell, nr*cell))
	for i := range out.Pix {
		out.Pix[i] = 255
	}
	hw := g.Size * g.Size
	for r, row := range rows {
		for c, img := range row {
			for y := 0; y < g.Size*scale; y++ {
				for x := 0; x < g.Size*scale; x++ {
					p := (y/scale)*g.Size + x/scale
					var col color.RGBA
					if g.Channels == 1 {
						v := uint8(255 * math.Max(0, math.Min(1, float64(img[p]))))
						col = color.RGBA{v, v, v, 255}
					} else {
						f := func(ch int) uint8 { return uint8(255 * math.Max(0, math.Min(1, float64(img[ch*hw+p])))) }
						col = color.RGBA{f(0), f(1), f(2), 255}
					}
					out.Set(c*cell+x, r*cell+y, col)
				}
			}
		}
	}
	return out
}
