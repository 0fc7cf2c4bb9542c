package data

import (
	"math"
	"math/rand/v2"
)

func sqrtf(x float64) float64 { return math.Sqrt(x) }

// resizeBilinear resamples a C x H x W image to C x oh x ow (align_corners=False, as torchvision).
func resizeBilinear(img []float32, c, h, w, oh, ow int) []float32 {
	return cropResize(img, c, h, w, 0, 0, float64(h), float64(w), oh, ow)
}

// cropResize resamples the box (top, left, ch x cw, in pixels, fractional allowed) of a C x H x W image to
// C x oh x ow with bilinear interpolation, clamping at the borders.
func cropResize(img []float32, c, h, w int, top, left, ch, cw float64, oh, ow int) []float32 {
	out := make([]float32, c*oh*ow)
	sy, sx := ch/float64(oh), cw/float64(ow)
	for y := 0; y < oh; y++ {
		fy := top + (float64(y)+0.5)*sy - 0.5
		y0 := int(math.Floor(fy))
		dy := float32(fy - float64(y0))
		y0c, y1c := clamp(y0, h), clamp(y0+1, h)
		for x := 0; x < ow; x++ {
			fx := left + (float64(x)+0.5)*sx - 0.5
			x0 := int(math.Floor(fx))
			dx := float32(fx - float64(x0))
			x0c, x1c := clamp(x0, w), clamp(x0+1, w)
			for k := 0; k < c; k++ {
				p := img[k*h*w:]
				v := (1-dy)*((1-dx)*p[y0c*w+x0c]+dx*p[y0c*w+x1c]) + dy*((1-dx)*p[y1c*w+x0c]+dx*p[y1c*w+x1c])
				out[(k*oh+y)*ow+x] = v
			}
		}
	}
	return out
}

func clamp(i, n int) int {
	if i < 0 {
		return 0
	}
	if i >= n {
		return n - 1
	}
	return i
}

// randomResizedCrop is torchvision's RandomResizedCrop: area fraction in scale, log-uniform aspect ratio in
// [3/4, 4/3], 10 attempts, else the whole image; the crop is resized back to the image's size.
func randomResizedCrop(img []float32, c, size int, scale [2]float64, r *rand.Rand) []float32 {
	area := float64(size * size)
	for attempt := 0; attempt < 10; attempt++ {
		target := area * (scale[0] + r.Float64()*(scale[1]-scale[0]))
		logr := math.Log(3.0/4) + r.Float64()*(math.Log(4.0/3)-math.Log(3.0/4))
		ar := math.Exp(logr)
		cw := math.Round(math.Sqrt(target * ar))
		ch := math.Round(math.Sqrt(target / ar))
		if cw > 0 && ch > 0 && cw <= float64(size) && ch <= float64(size) {
			top := float64(r.IntN(size - int(ch) + 1))
			left := float64(r.IntN(size - int(cw) + 1))
			return cropResize(img, c, size, size, top, left, ch, cw, size, size)
		}
	}
	return append([]float32(nil), img...)
}

// hflip mirrors a C x S x S image in place.
func hflip(img []float32, c, size int) {
	for k := 0; k < c; k++ {
		for y := 0; y < size; y++ {
			row := img[(k*size+y)*size : (k*size+y+1)*size]
			for i, j := 0, size-1; i < j; i, j = i+1, j-1 {
				row[i], row[j] = row[j], row[i]
			}
		}
	}
}
