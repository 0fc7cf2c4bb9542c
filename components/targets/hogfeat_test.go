package targets

import (
	"encoding/json"
	"math"
	"math/rand/v2"
	"os"
	"slices"
	"testing"
)

// hogFixture is testdata/hog_skimage.json, written by testdata/gen_hog.py with scikit-image.
type hogFixture struct {
	Skimage string `json:"skimage"`
	Call    string `json:"call"`
	Cases   []struct {
		Name                                     string
		Note                                     string
		Batch, Channels, Size, Cell, Bins, Patch int
		Images, Expected                         []float32
	} `json:"cases"`
}

// HOGPatches reproduces skimage.feature.hog (block_norm='L2', blocks = non-overlapping patches) on gray and
// three-channel images, odd cells, 7 bins, and pixels whose orientation rounds to 180 (dropped by skimage).
func TestHOGMatchesSkimage(t *testing.T) {
	raw, err := os.ReadFile("testdata/hog_skimage.json")
	if err != nil {
		t.Fatal(err)
	}
	var fx hogFixture
	if err := json.Unmarshal(raw, &fx); err != nil {
		t.Fatal(err)
	}
	if len(fx.Cases) == 0 {
		t.Fatal("no cases in the fixture")
	}
	t.Logf("skimage %s: %s", fx.Skimage, fx.Call)
	for _, c := range fx.Cases {
		t.Run(c.Name, func(t *testing.T) {
			p := HOGParams{Cell: c.Cell, Bins: c.Bins, BlockCells: c.Patch / c.Cell}
			got, err := HOGPatches(c.Images, c.Batch, c.Channels, c.Size, c.Patch, p)
			if err != nil {
				t.Fatal(err)
			}
			grid, k := c.Size/c.Patch, c.Patch/c.Cell
			if want := c.Batch * grid * grid * k * k * c.Bins; len(got) != want || len(c.Expected) != want {
				t.Fatalf("got %d values, fixture %d, want %d", len(got), len(c.Expected), want)
			}
			var worst float64
			at := 0
			for i := range got {
				if d := math.Abs(float64(got[i]) - float64(c.Expected[i])); d > worst {
					worst, at = d, i
				}
			}
			t.Logf("%s: max |Go - skimage| = %.3g", c.Note, worst)
			if worst >= 1e-5 {
				t.Errorf("max abs diff %.3g at %d: got %v, skimage %v", worst, at, got[at], c.Expected[at])
			}
		})
	}
}

func hogRandImage(rng *rand.Rand, channels, size int, dyadic bool) []float32 {
	img := make([]float32, channels*size*size)
	for i := range img {
		if dyadic {
			img[i] = float32(rng.IntN(65)) / 64 // exact under shifts by small dyadic constants
		} else {
			img[i] = rng.Float32()
		}
	}
	return img
}

func hogCells(t *testing.T, img []float32, channels, size, cell, bins int) []float64 {
	t.Helper()
	gr, gc := make([]float32, size*size), make([]float32, size*size)
	hogGradients(img, channels, size, gr, gc)
	n := size / cell
	hist := make([]float64, n*n*bins)
	hogCellHistograms(gr, gc, size, cell, bins, hist)
	return hist
}

// A constant image has no gradient: all cell histograms are zero, and so is every normalised patch vector
// (v / sqrt(0 + eps^2) = 0).
func TestHOGConstantImageIsZero(t *testing.T) {
	for _, tc := range []struct {
		name     string
		channels int
		value    float32
	}{{"gray zero", 1, 0}, {"gray 0.7", 1, 0.7}, {"gray -3", 1, -3}, {"rgb 0.25", 3, 0.25}} {
		t.Run(tc.name, func(t *testing.T) {
			const size, patch = 12, 4
			img := make([]float32, tc.channels*size*size)
			for i := range img {
				img[i] = tc.value
			}
			for i, v := range hogCells(t, img, tc.channels, size, 2, 9) {
				if v != 0 {
					t.Fatalf("histogram value %d is %v", i, v)
				}
			}
			out, err := HOGPatches(img, 1, tc.channels, size, patch, DefaultHOGParams(patch))
			if err != nil {
				t.Fatal(err)
			}
			for i, v := range out {
				if v != 0 {
					t.Fatalf("normalised value %d is %v", i, v)
				}
			}
		})
	}
}

// Every patch vector with gradients has unit L2 norm (up to eps and float32 rounding).
func TestHOGPatchVectorsHaveUnitNorm(t *testing.T) {
	rng := rand.New(rand.NewPCG(1, 2))
	for _, tc := range []struct {
		name                         string
		batch, channels, size, patch int
		p                            HOGParams
	}{
		{"gray 28, 4x4 patches", 2, 1, 28, 4, DefaultHOGParams(4)},
		{"rgb 28, 4x4 patches", 2, 3, 28, 4, DefaultHOGParams(4)},
		{"gray 32, 16x16 patches of 8x8 cells", 1, 1, 32, 16, DefaultHOGParams(16)},
		{"gray 24, 6x6 patches of 2x2 cells, 8 bins", 1, 1, 24, 6, HOGParams{Cell: 2, Bins: 8}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			img := hogRandImage(rng, tc.batch*tc.channels, tc.size, false)
			out, err := HOGPatches(img, tc.batch, tc.channels, tc.size, tc.patch, tc.p)
			if err != nil {
				t.Fatal(err)
			}
			dim := (tc.patch / tc.p.Cell) * (tc.patch / tc.p.Cell) * tc.p.Bins
			if want := tc.batch * (tc.size / tc.patch) * (tc.size / tc.patch) * dim; len(out) != want {
				t.Fatalf("%d values, want %d", len(out), want)
			}
			for i := 0; i < len(out); i += dim {
				var ss float64
				for _, v := range out[i : i+dim] {
					if v < 0 {
						t.Fatalf("negative histogram value %v", v)
					}
					ss += float64(v) * float64(v)
				}
				if n := math.Sqrt(ss); math.Abs(n-1) > 1e-5 {
					t.Fatalf("patch %d has norm %v", i/dim, n)
				}
			}
		})
	}
}

// Edges put their mass in the bin of their gradient orientation, unsigned, rad2deg(atan2(g_row, g_col)) mod
// 180 with rows going down: a vertical edge (intensity changing along columns, either way) is 0 degrees, bin
// 0 = [0,20); a horizontal edge 90 degrees, bin 4 = [80,100); a ramp growing with row+col 45 degrees, bin 2
// = [40,60); a ramp growing with row-col 135 degrees, bin 6 = [120,140). Only interior cells are checked: on
// the border rows/columns skimage zeroes one gradient component, which changes the orientation of ramps.
func TestHOGEdgeOrientationBins(t *testing.T) {
	const size, cell, bins = 12, 2, 9
	for _, tc := range []struct {
		name string
		f    func(r, c int) float32
		bin  int
	}{
		{"vertical edge rising", func(r, c int) float32 { return b2f(c >= 6) }, 0},
		{"vertical edge falling", func(r, c int) float32 { return b2f(c < 5) }, 0},
		{"horizontal edge", func(r, c int) float32 { return b2f(r >= 7) }, 4},
		{"horizontal edge falling", func(r, c int) float32 { return 2 * b2f(r < 4) }, 4},
		{"ramp row+col (45 degrees)", func(r, c int) float32 { return float32(r+c) / 8 }, 2},
		{"ramp row-col (135 degrees)", func(r, c int) float32 { return float32(r-c) / 8 }, 6},
	} {
		t.Run(tc.name, func(t *testing.T) {
			img := make([]float32, size*size)
			for r := range size {
				for c := range size {
					img[r*size+c] = tc.f(r, c)
				}
			}
			hist := hogCells(t, img, 1, size, cell, bins)
			n := size / cell
			var in float64
			for ci := 1; ci < n-1; ci++ {
				for cj := 1; cj < n-1; cj++ {
					h := hist[(ci*n+cj)*bins:][:bins]
					for b, v := range h {
						if b == tc.bin {
							in += v
						} else if v != 0 {
							t.Fatalf("cell (%d,%d) has %v in bin %d, want all mass in bin %d: %v", ci, cj, v, b, tc.bin, h)
						}
					}
				}
			}
			if in <= 0 {
				t.Fatalf("no mass in bin %d", tc.bin)
			}
		})
	}
}

func b2f(b bool) float32 {
	if b {
		return 1
	}
	return 0
}

// Adding a constant to the intensities changes nothing (gradients are differences). Dyadic pixel values and
// shifts keep the float32 arithmetic exact, so the outputs must be identical.
func TestHOGIntensityShiftInvariant(t *testing.T) {
	rng := rand.New(rand.NewPCG(3, 4))
	for _, tc := range []struct {
		name     string
		channels int
		shift    float32
	}{{"gray +3", 1, 3}, {"gray -0.5", 1, -0.5}, {"rgb +0.25", 3, 0.25}, {"rgb -2", 3, -2}} {
		t.Run(tc.name, func(t *testing.T) {
			const batch, size, patch = 2, 28, 4
			img := hogRandImage(rng, batch*tc.channels, size, true)
			shifted := make([]float32, len(img))
			for i, v := range img {
				shifted[i] = v + tc.shift
			}
			a, err := HOGPatches(img, batch, tc.channels, size, patch, DefaultHOGParams(patch))
			if err != nil {
				t.Fatal(err)
			}
			b, err := HOGPatches(shifted, batch, tc.channels, size, patch, DefaultHOGParams(patch))
			if err != nil {
				t.Fatal(err)
			}
			if !slices.Equal(a, b) {
				t.Fatal("shifting intensities changed the HOG")
			}
			if slices.Max(a) == 0 {
				t.Fatal("degenerate test image")
			}
		})
	}
}

// skimage quirks reproduced in the cell histograms: an orientation that rounds to exactly 180.0 is in no bin
// (dropped), and per-cell sums are accumulated in float32.
func TestHOGSkimageQuirks(t *testing.T) {
	hist := func(gRow, gCol []float32) []float64 {
		h := make([]float64, 9)
		hogCellHistograms(gRow, gCol, 2, 2, 9, h)
		return h
	}
	negZero := float32(math.Copysign(0, -1))
	// Pixel 0: atan2(-1e-30, 1) = -5.7e-29 degrees, mod 180 = 180.0: dropped. Pixel 1: +tiny, bin 0. Pixels
	// 2 and 3: atan2(-0, -1) = -180 and atan2(-0, 1) = -0, mod 180 = +0: bin 0.
	h := hist([]float32{-1e-30, 1e-30, negZero, negZero}, []float32{1, 1, -1, 1})
	if want := []float64{0.75, 0, 0, 0, 0, 0, 0, 0, 0}; !slices.Equal(h, want) {
		t.Errorf("180-degree pixel: got %v, want %v", h, want)
	}
	// float32 accumulation: 1 + 1e-8 + 1e-8 + 1e-8 stays 1 in float32, so the cell value is exactly 1/4.
	h = hist(make([]float32, 4), []float32{1, 1e-8, 1e-8, 1e-8})
	if h[0] != 0.25 {
		t.Errorf("float32 accumulation: got %.17g, want 0.25 (float64 sums give %.17g)", h[0], (1+3e-8)/4)
	}
}

func TestHOGRejectsBadShapes(t *testing.T) {
	img := make([]float32, 2*1*8*8)
	for _, tc := range []struct {
		name                         string
		batch, channels, size, patch int
		p                            HOGParams
	}{
		{"size not multiple of patch", 2, 1, 8, 3, HOGParams{Cell: 1, Bins: 9}},
		{"patch not multiple of cell", 2, 1, 8, 4, HOGParams{Cell: 3, Bins: 9}},
		{"block cells mismatch", 2, 1, 8, 4, HOGParams{Cell: 2, Bins: 9, BlockCells: 3}},
		{"zero cell", 2, 1, 8, 4, HOGParams{Cell: 0, Bins: 9}},
		{"zero bins", 2, 1, 8, 4, HOGParams{Cell: 2, Bins: 0}},
		{"wrong length", 3, 1, 8, 4, DefaultHOGParams(4)},
		{"zero channels", 2, 0, 8, 4, DefaultHOGParams(4)},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if _, err := HOGPatches(img, tc.batch, tc.channels, tc.size, tc.patch, tc.p); err == nil {
				t.Fatal("no error")
			}
		})
	}
	if _, err := HOGPatches(img, 2, 1, 8, 4, DefaultHOGParams(4)); err != nil {
		t.Fatalf("valid input rejected: %v", err)
	}
}
