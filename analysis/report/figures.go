package report

import (
	"context"
	"fmt"
	"image"
	"image/png"
	"math/rand/v2"
	"os"
	"path/filepath"

	"github.com/gomlx/compute/dtypes"
	"github.com/gomlx/compute/shapes"
	. "github.com/gomlx/gomlx/core/graph"
	"github.com/gomlx/gomlx/core/tensors"
	"mimlab/analysis/attention"
	"mimlab/analysis/recon"
	"mimlab/analysis/tsne"
	"mimlab/components/masking"
	"mimlab/components/method"
	"mimlab/components/targets"
	"mimlab/data"
	"mimlab/experiment"
	"mimlab/nn"
)

const figImages = 8 // test images shown in the attention and reconstruction figures

func modelFigures(opt Options, configs []string, by map[string][]trialInfo, progress func(string)) ([]*section, error) {
	be, name, err := nn.NewBackend(opt.Backend, opt.Log)
	if err != nil {
		return nil, err
	}
	env := experiment.NewEnv(be, name, opt.Runs, opt.Log)
	tsneSec := &section{title: "t-SNE of patch-level features (Fig. 5 analog)", text: fmt.Sprintf(
		"Final-layer encoder features of every patch of %d test images (first seed of each configuration), Barnes-Hut t-SNE. "+
			"Left: each patch coloured by its image's class. Right: foreground (patch mean intensity > 0.1) against background.", opt.TSNEImages)}
	attSec := &section{title: "Attention maps (Fig. 6 analog)", text: "cls-to-patch attention of the last encoder layer, averaged over heads, upsampled and overlaid on the input, for fixed test images."}
	recSec := &section{title: "Reconstructions (Fig. 4 analog)", text: "Pixel-target CAE models. Rows: input; Fig. 4 as the paper draws it (the encoder on the whole, unmasked image, " +
		"the regressor skipped, the decoder on every patch's representation: the whole image reconstructed); masked input; the normal prediction of the masked patches " +
		"(encoder on visible patches, regressor, decoder); and the decoder fed the encoder's own outputs on the masked patches alone (regressor skipped)."}
	for _, c := range configs {
		ti := by[c][0]
		progress("figures for " + c)
		// A trial whose model cannot be loaded (a missing or damaged checkpoint, a hash that is not one)
		// loses its figures, not the report.
		t, set, params, step, err := trained(env, ti, false)
		if err != nil {
			progress(fmt.Sprintf("skipping the figures of trial %d: %v", ti.ID, err))
			continue
		}
		defer t.Close()
		defer nn.Free(params...)
		key := fmt.Sprintf("%s_%d", ti.Hash, step)
		fig := func(kind string) (string, string, bool) {
			rel := filepath.Join("figs", key+"_"+kind+".png")
			abs := filepath.Join(opt.Out, rel)
			_, err := os.Stat(abs)
			return rel, abs, err == nil
		}
		// t-SNE
		relC, absC, okC := fig("tsne_class")
		relF, absF, okF := fig("tsne_fg")
		if !okC || !okF {
			if err := tsneFigures(opt.ctx(), t, set, params, opt.TSNEImages, absC, absF, c); err != nil {
				return nil, fmt.Errorf("t-SNE of trial %d: %w", ti.ID, err)
			}
		}
		tsneSec.grid = append(tsneSec.grid, []figure{{relC, c + ": by class"}, {relF, c + ": foreground/background"}})
		// attention
		relA, absA, okA := fig("attention")
		if !okA {
			if err := attentionFigure(t, set, params, absA); err != nil {
				return nil, fmt.Errorf("attention of trial %d: %w", ti.ID, err)
			}
		}
		attSec.grid = append(attSec.grid, []figure{{relA, c}})
		// reconstructions
		_, pixels := t.Model.Target.(targets.Pixel)
		if _, ok := t.Model.Method.(method.Reconstructor); ok && pixels {
			relR, absR, okR := fig("recon5") // five rows since Fig. 4 as the paper draws it (a new name: cached four-row figures are not reused)
			if !okR {
				if err := reconFigure(t, set, params, absR); err != nil {
					return nil, fmt.Errorf("reconstructions of trial %d: %w", ti.ID, err)
				}
			}
			recSec.grid = append(recSec.grid, []figure{{relR, c}})
		}
	}
	conc, err := concentrationTable(env, configs, by, progress)
	if err != nil {
		return nil, err
	}
	if len(conc.rows) > 0 {
		attSec.text += " " + fmt.Sprintf(concentrationText, attnStatImages)
		attSec.tables = append(attSec.tables, conc)
		if short := keyTable(configs, by); shortened(short) {
			attSec.tables = append(attSec.tables, short)
		}
	}
	out := []*section{tsneSec, attSec}
	if len(recSec.grid) > 0 {
		out = append(out, recSec)
	}
	return out, nil
}

// firstImages is a split of the first n test images.
func firstImages(d *data.Dataset, n int) *data.Split {
	n = min(n, d.Test.N)
	return &data.Split{Images: d.Test.Images[:n*d.ImageLen()], Labels: d.Test.Labels[:n], N: n}
}

func tsneFigures(ctx context.Context, t *experiment.Trial, set *nn.ParamSet, params []*tensors.Tensor, nImages int, classPath, fgPath, title string) error {
	split := firstImages(t.Data, nImages)
	_, tok, err := t.ExtractCtx(ctx, set, params, split, true)
	if err != nil {
		return err
	}
	v := t.Model.ViT
	np := v.NumPatches()
	x := make([]float64, 0, split.N*np*v.Dim)
	var cls, fg []int
	g := recon.Geometry{Channels: v.Channels, Size: v.ImageSize, Patch: v.PatchSize}
	for i := 0; i < split.N; i++ {
		for p := 1; p <= np; p++ { // skip cls
			row := tok.X[(i*tok.T+p)*tok.D : (i*tok.T+p+1)*tok.D]
			for _, f := range row {
				x = append(x, float64(f))
			}
			cls = append(cls, split.Labels[i])
			fg = append(fg, foreground(split.Images[i*t.Data.ImageLen():(i+1)*t.Data.ImageLen()], g, p-1))
		}
	}
	cfg := tsne.Default()
	cfg.Seed = 1
	y, err := tsne.EmbedCtx(ctx, x, len(cls), v.Dim, cfg)
	if err != nil {
		return err
	}
	if err := scatter(classPath, "patches by image class", y, cls, t.Data.ClassNames); err != nil {
		return err
	}
	return scatter(fgPath, "patches: foreground / background", y, fg, []string{"background", "foreground"})
}

// foreground is 1 when the patch's mean intensity (raw, [0,1]) exceeds 0.1.
func foreground(img []float32, g recon.Geometry, p int) int {
	grid := g.Size / g.Patch
	py, px := p/grid, p%grid
	s := 0.0
	for c := 0; c < g.Channels; c++ {
		for y := 0; y < g.Patch; y++ {
			for x := 0; x < g.Patch; x++ {
				s += float64(img[(c*g.Size+py*g.Patch+y)*g.Size+px*g.Patch+x])
			}
		}
	}
	if s/float64(g.Channels*g.Patch*g.Patch) > 0.1 {
		return 1
	}
	return 0
}

// loaderImages are the first n test images as the model sees them (normalised when the spec says so).
func loaderImages(t *experiment.Trial, n int) []float32 {
	split := firstImages(t.Data, n)
	l := data.NewLoader(t.Data, split, data.LoaderConfig{BatchSize: n, Normalize: t.Cfg.Data.Normalize}, 0)
	defer l.Close()
	return l.Next().Images
}

func gray(img []float32, c, size int) []float32 {
	if c == 1 {
		return img
	}
	hw := size * size
	out := make([]float32, hw)
	for i := range out {
		out[i] = 0.299*img[i] + 0.587*img[hw+i] + 0.114*img[2*hw+i]
	}
	return out
}

func attentionFigure(t *experiment.Trial, set *nn.ParamSet, params []*tensors.Tensor, path string) error {
	v := t.Model.ViT
	imgs := loaderImages(t, figImages)
	in := tensors.FromFlatDataAndDimensions(imgs, figImages, v.Channels, v.ImageSize, v.ImageSize)
	defer nn.Free(in)
	w, dims, err := attention.Weights(t.Env().Backend, t.Model, set, params, in, v.Depth-1)
	if err != nil {
		return err
	}
	maps := attention.ClsMaps(w, dims)
	raw := firstImages(t.Data, figImages)
	g := recon.Geometry{Channels: 3, Size: v.ImageSize * 4, Patch: 1}
	var row [][]float32
	for i := 0; i < figImages; i++ {
		im := attention.Overlay(gray(raw.Images[i*t.Data.ImageLen():(i+1)*t.Data.ImageLen()], v.Channels, v.ImageSize), v.ImageSize, maps[i], v.Grid(), 4)
		row = append(row, rgbaToCHW(im.Pix, v.ImageSize*4))
	}
	return savePNG(path, g.Grid([][][]float32{row}, 1))
}

func rgbaToCHW(pix []uint8, size int) []float32 {
	hw := size * size
	out := make([]float32, 3*hw)
	for i := 0; i < hw; i++ {
		for c := 0; c < 3; c++ {
			out[c*hw+i] = float32(pix[4*i+c]) / 255
		}
	}
	return out
}

func reconFigure(t *experiment.Trial, set *nn.ParamSet, params []*tensors.Tensor, path string) error {
	m := t.Model
	v := m.ViT
	n, k := v.NumPatches(), m.NumMasked
	imgs := loaderImages(t, figImages)
	var vis, msk []int64
	mf := make([]float32, figImages*n)
	for i := 0; i < figImages; i++ {
		vi, mi := masking.Indices(t.Mask.Mask(rand.New(rand.NewPCG(42, uint64(i))), v.Grid()))
		vis, msk = append(vis, vi...), append(msk, mi...)
		for _, j := range mi {
			mf[i*n+int(j)] = 1
		}
	}
	in := []*tensors.Tensor{tensors.FromFlatDataAndDimensions(imgs, figImages, v.Channels, v.ImageSize, v.ImageSize),
		tensors.FromFlatDataAndDimensions(vis, figImages, n-k), tensors.FromFlatDataAndDimensions(msk, figImages, k),
		tensors.FromFlatDataAndDimensions(mf, figImages, n)}
	var shp []shapes.Shape
	for _, x := range in {
		shp = append(shp, x.Shape())
	}
	prog, err := nn.Compile(t.Env().Backend, set, dtypes.Float32, false, shp, func(s nn.Scope, d []*Node) []*Node {
		r := m.Method.(method.Reconstructor)
		return []*Node{r.Predict(m, s, m.Unpack(d)), r.Reconstruct(m, s, d[method.InImages], d[method.InMasked]), r.ReconstructAll(m, s, d[method.InImages])}
	})
	if err != nil {
		return err
	}
	defer prog.Finalize()
	out, err := prog.Run(params, nil, in...)
	nn.Free(in...)
	if err != nil {
		return err
	}
	pred, rec, whole := nn.Float32s(out[0]), nn.Float32s(out[1]), nn.Float32s(out[2])
	nn.Free(out...)
	g := recon.Geometry{Channels: v.Channels, Size: v.ImageSize, Patch: v.PatchSize}
	raw := firstImages(t.Data, figImages)
	normalized := m.Target.(targets.Pixel).Normalize
	pd := v.PatchDim()
	denorm := func(p []float32) []float32 { // targets in the loader's normalised space -> [0,1]
		if normalized || !t.Cfg.Data.Normalize {
			return p
		}
		out := make([]float32, len(p))
		for i, x := range p {
			ch := (i % pd) / (v.PatchSize * v.PatchSize)
			out[i] = x*t.Data.Std[ch] + t.Data.Mean[ch]
		}
		return out
	}
	rows := make([][][]float32, 5)
	il := t.Data.ImageLen()
	all := make([]int64, n)
	for j := range all {
		all[j] = int64(j)
	}
	for i := 0; i < figImages; i++ {
		img := raw.Images[i*il : (i+1)*il]
		mi := msk[i*k : (i+1)*k]
		rows[0] = append(rows[0], img)
		rows[1] = append(rows[1], g.Paste(img, all, denorm(whole[i*n*pd:(i+1)*n*pd]), normalized))
		rows[2] = append(rows[2], g.Blank(img, mi))
		rows[3] = append(rows[3], g.Paste(img, mi, denorm(pred[i*k*pd:(i+1)*k*pd]), normalized))
		rows[4] = append(rows[4], g.Paste(img, mi, denorm(rec[i*k*pd:(i+1)*k*pd]), normalized))
	}
	return savePNG(path, g.Grid(rows, 4))
}

func savePNG(path string, img *image.RGBA) error {
	f, err := os.Create(path + ".tmp")
	if err != nil {
		return err
	}
	if err := png.Encode(f, img); err != nil {
		f.Close()
		return err
	}
	if err := f.Close(); err != nil {
		return err
	}
	return os.Rename(path+".tmp", path)
}
