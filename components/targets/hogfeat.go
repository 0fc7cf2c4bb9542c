package targets

import (
	"fmt"
	"math"
)

// HOGParams are MaskFeat's HOG settings, in pixels.
type HOGParams struct {
	Cell       int // pixels per side of a cell
	Bins       int // orientation bins over [0,180) degrees
	BlockCells int // cells per side of a normalisation block (= one patch); 0: patch/Cell
}

// DefaultHOGParams are this framework's MaskFeat settings for a patch size: 9 bins, cell = patch/2 (2x2 cells
// per patch, e.g. 2x2-pixel cells on the 4x4 patches of 28x28 images; MaskFeat has 8x8 cells on 16x16 patches
// of 224x224 images, also 2x2 cells per patch).
func DefaultHOGParams(patch int) HOGParams {
	return HOGParams{Cell: patch / 2, Bins: 9, BlockCells: 2}
}

// HOGPatches computes, for each image of a batch (layout B x C x S x S float32, the loader's layout), one
// L2-normalised HOG vector per non-overlapping patch of patch x patch pixels, row-major over the patch grid:
// out [B, (S/patch)^2, (patch/cell)^2 * bins].
//
// MaskFeat (Wei et al. 2022) predicts, for each masked patch, the HOG of that patch: orientation histograms
// of 9 unsigned bins over cells, the cells of one patch concatenated and L2-normalised per patch (a block is
// a patch, blocks do not overlap). MaskFeat uses 8x8-pixel cells on 16x16 patches of 224x224 images; the
// default here (DefaultHOGParams) is cell = patch/2, e.g. 2x2-pixel cells on 4x4 patches of 28x28 images.
// The paper's own code (SlowFast's HOGLayerC) differs in detail (Sobel-type gradients, one histogram per RGB
// channel, Gaussian spatial weighting); this target instead follows scikit-image exactly so that it has a
// checkable reference definition.
//
// The result equals scikit-image's
//
//	hog(img, orientations=bins, pixels_per_cell=(cell, cell), cells_per_block=(k, k), block_norm='L2',
//	    feature_vector=False, channel_axis=None)   // or channel_axis=-1 on the S x S x C image when C > 1
//
// with k = patch/cell, taken at the blocks whose top-left cell index is a multiple of k (out[::k, ::k],
// shape (S/patch, S/patch, k, k, bins)), each block flattened as (cell row, cell column, bin). That is
// (checked against skimage 0.19.3 by TestHOGMatchesSkimage):
//
//   - gradients over the whole image (so a patch's border pixels see the neighbouring patches), in float32:
//     g_row = x[r+1,c] - x[r-1,c], g_col = x[r,c+1] - x[r,c-1], zero on the first and last row (g_row) and
//     column (g_col); with C > 1 channels, per pixel the gradient of the channel with the largest float32
//     magnitude (the first one on ties);
//   - magnitude hypot(g_row, g_col) and orientation rad2deg(atan2(g_row, g_col)) mod 180 (Python's mod,
//     non-negative), in float64: a vertical edge (intensity changing along columns) has orientation 0 and
//     falls in bin 0, a horizontal one has 90 (bin 4 of 9);
//   - hard binning: a pixel goes to bin i when 180/bins*i <= orientation < 180/bins*(i+1), computed as
//     skimage does; an orientation that rounds to exactly 180.0 (a tiny negative g_row against a positive
//     g_col: atan2 -> -1e-30 degrees, mod 180 -> 180.0) is in no bin and is dropped, as in skimage;
//   - each cell's histogram is the sum of its pixels' magnitudes divided by the cell area; skimage's Cython
//     loop accumulates this sum in a C float (float32, each addition rounded) and divides in float32, which
//     is reproduced; the cells cover exactly the pixels [i*cell, (i+1)*cell) of each axis;
//   - per patch, v / sqrt(sum(v^2) + eps^2) with eps = 1e-5 in float64 (skimage's 'L2' block norm), so a
//     patch without gradients gives a zero vector and any other one a vector of L2 norm just under 1.
//
// size must be divisible by patch and patch by p.Cell; images must hold batch*channels*size*size values.
func HOGPatches(images []float32, batch, channels, size, patch int, p HOGParams) ([]float32, error) {
	switch {
	case batch < 0 || channels < 1 || size < 1 || patch < 1:
		return nil, fmt.Errorf("hog: batch %d, channels %d, size %d, patch %d: need batch >= 0 and positive others",
			batch, channels, size, patch)
	case p.Cell < 1 || p.Bins < 1:
		return nil, fmt.Errorf("hog: cell %d and bins %d must be positive", p.Cell, p.Bins)
	case size%patch != 0:
		return nil, fmt.Errorf("hog: image size %d is not a multiple of the patch size %d", size, patch)
	case patch%p.Cell != 0:
		return nil, fmt.Errorf("hog: patch size %d is not a multiple of the cell size %d", patch, p.Cell)
	case p.BlockCells != 0 && p.BlockCells*p.Cell != patch:
		return nil, fmt.Errorf("hog: %d cells of %d pixels per block side do not make a %d-pixel patch",
			p.BlockCells, p.Cell, patch)
	case len(images) != batch*channels*size*size:
		return nil, fmt.Errorf("hog: %d values for a batch of %d x %d x %d x %d images", len(images), batch,
			channels, size, size)
	}
	k := patch / p.Cell
	grid := size / patch
	dim := k * k * p.Bins
	out := make([]float32, batch*grid*grid*dim)
	gRow := make([]float32, size*size)
	gCol := make([]float32, size*size)
	nCells := size / p.Cell
	hist := make([]float64, nCells*nCells*p.Bins)
	vec := make([]float64, dim)
	eps := 1e-5
	eps2 := eps * eps
	per := size * size * channels
	for b := range batch {
		hogGradients(images[b*per:(b+1)*per], channels, size, gRow, gCol)
		hogCellHistograms(gRow, gCol, size, p.Cell, p.Bins, hist)
		for pr := range grid {
			for pc := range grid {
				n := 0
				for i := range k {
					for j := range k {
						cell := ((pr*k+i)*nCells + pc*k + j) * p.Bins
						n += copy(vec[n:], hist[cell:cell+p.Bins])
					}
				}
				var ss float64
				for _, v := range vec {
					ss += v * v
				}
				den := math.Sqrt(ss + eps2)
				o := out[((b*grid+pr)*grid+pc)*dim:][:dim]
				for i, v := range vec {
					o[i] = float32(v / den)
				}
			}
		}
	}
	return out, nil
}

// hogGradients fills gRow, gCol (size x size) with skimage's HOG gradients of one C x S x S image: float32
// central differences, zero on the border rows (gRow) and columns (gCol); with several channels, per pixel
// the channel whose float32 magnitude is largest (first on ties, as numpy's argmax).
func hogGradients(img []float32, channels, size int, gRow, gCol []float32) {
	grad := func(x []float32, r, c int) (gr, gc float32) {
		if r > 0 && r < size-1 {
			gr = x[(r+1)*size+c] - x[(r-1)*size+c]
		}
		if c > 0 && c < size-1 {
			gc = x[r*size+c+1] - x[r*size+c-1]
		}
		return gr, gc
	}
	plane := size * size
	for r := range size {
		for c := range size {
			gr, gc := grad(img[:plane], r, c)
			if channels > 1 {
				// numpy's float32 hypot (glibc hypotf): sqrt in double of the exact squares, rounded to float32.
				best := float32(math.Sqrt(float64(gr)*float64(gr) + float64(gc)*float64(gc)))
				for ch := 1; ch < channels; ch++ {
					r2, c2 := grad(img[ch*plane:(ch+1)*plane], r, c)
					m := float32(math.Sqrt(float64(r2)*float64(r2) + float64(c2)*float64(c2)))
					if m > best {
						best, gr, gc = m, r2, c2
					}
				}
			}
			gRow[r*size+c], gCol[r*size+c] = gr, gc
		}
	}
}

// hogCellHistograms fills hist [size/cell, size/cell, bins] as skimage's _hoghistogram.hog_histograms: hard
// binning of float64 orientations in [0,180), float32 accumulation of the magnitudes per cell and bin in
// row-major pixel order, divided in float32 by the cell area.
func hogCellHistograms(gRow, gCol []float32, size, cell, bins int, hist []float64) {
	nCells := size / cell
	pi := math.Pi
	toDeg := 180.0 / pi // numpy's rad2deg multiplies by the double 180/pi
	width := 180.0 / float64(bins)
	lo := make([]float64, bins+1) // bin i is [lo[i], lo[i+1]), the bounds as skimage computes them
	for i := range lo {
		lo[i] = width * float64(i)
	}
	totals := make([]float32, bins)
	area := float32(cell * cell)
	for ci := range nCells {
		for cj := range nCells {
			clear(totals)
			for r := ci * cell; r < (ci+1)*cell; r++ {
				for c := cj * cell; c < (cj+1)*cell; c++ {
					gr, gc := float64(gRow[r*size+c]), float64(gCol[r*size+c])
					mag := math.Sqrt(gr*gr + gc*gc)
					o := pyMod(math.Atan2(gr, gc)*toDeg, 180)
					i := int(o / width)
					i = max(0, min(i, bins-1))
					for i > 0 && o < lo[i] {
						i--
					}
					for i < bins-1 && o >= lo[i+1] {
						i++
					}
					if o < lo[i] || o >= lo[i+1] {
						continue // e.g. o == 180.0 after rounding: skimage counts it nowhere
					}
					// Cython: `cdef float total; total += magnitude[...]`: a double add rounded to float32.
					totals[i] = float32(float64(totals[i]) + mag)
				}
			}
			h := hist[(ci*nCells+cj)*bins:][:bins]
			for i, t := range totals {
				h[i] = float64(t / area)
			}
		}
	}
}

// pyMod is numpy's float remainder (Python's %): fmod shifted to the divisor's sign, +0 for a zero result.
// For a tiny negative x it returns m itself (x + m rounds to m).
func pyMod(x, m float64) float64 {
	r := math.Mod(x, m)
	if r == 0 {
		return math.Copysign(0, m)
	}
	if (r < 0) != (m < 0) {
		r += m
	}
	return r
}
