package method

import (
	"math"
	"math/rand/v2"
	"slices"
	"testing"

	"github.com/gomlx/compute"
	"github.com/gomlx/compute/dtypes"
	"github.com/gomlx/compute/shapes"
	. "github.com/gomlx/gomlx/core/graph"
	"github.com/gomlx/gomlx/core/tensors"
	"mimlab/components/decoder"
	"mimlab/components/encoder"
	"mimlab/components/masking"
	"mimlab/components/regressor"
	"mimlab/components/targets"
	"mimlab/framework/registry"
	"mimlab/nn"
	"mimlab/nn/nntest"
)

const (
	tB, tImg, tPatch, tM = 2, 12, 4, 4 // 3x3 grid, 4 of 9 masked
)

func model(t testing.TB, methodName, dec string, pixelTarget bool) *Model {
	t.Helper()
	enc := encoder.Encoder{Config: encoder.Config{Name: "vit", Dim: 16, Depth: 2, Heads: 2, MLPRatio: 2, LayerScale: 0.1}}
	meth, err := Registry.Build(methodName, mustNew(t)(Registry.New(methodName)))
	if err != nil {
		t.Fatal(err)
	}
	m := &Model{Method: meth, Name: methodName, ViT: enc.ViT(tImg, tPatch, 1), Encoder: enc, NumMasked: tM, Classes: 3, Decoder: buildDecoder(t, dec)}
	if methodName == "cae" {
		m.Regressor = &regressor.Regressor{Config: regressor.Config{Name: "cae", StackConfig: nn.StackConfig{Depth: 2, MLPRatio: 2, LayerScale: 0.1}}}
	}
	if pixelTarget {
		m.Target = targets.Pixel{PatchDim: tPatch * tPatch}
	}
	if err := m.Check(); err != nil {
		t.Fatal(err)
	}
	return m
}

func mustNew(t testing.TB) func(registry.Config, error) registry.Config {
	return func(c registry.Config, err error) registry.Config {
		t.Helper()
		if err != nil {
			t.Fatal(err)
		}
		return c
	}
}

// buildDecoder builds a registered decoder with one small block (if it has blocks).
func buildDecoder(t testing.TB, name string) decoder.Decoder {
	t.Helper()
	cfg := mustNew(t)(decoder.Registry.New(name))
	sc := nn.StackConfig{Depth: 1, MLPRatio: 2, LayerScale: 0.1}
	switch c := cfg.(type) {
	case *decoder.TransformerConfig:
		c.StackConfig = sc
	case *decoder.MAEConfig:
		c.StackConfig = sc
	}
	d, err := decoder.Registry.Build(name, cfg)
	if err != nil {
		t.Fatal(err)
	}
	return d
}

// batch makes images and a block mask per sample: images, visible, masked, maskF.
func batch(seed uint64, dtype dtypes.DType) []*tensors.Tensor {
	r := rand.New(rand.NewPCG(seed, 0))
	n := (tImg / tPatch) * (tImg / tPatch)
	imgs := make([]float64, tB*tImg*tImg)
	for i := range imgs {
		imgs[i] = r.Float64()
	}
	var vis, msk []int64
	mf := make([]float64, tB*n)
	strat := masking.Block{BlockConfig: masking.BlockConfig{Name: "block", NumMasked: tM, MinBlock: 2, MinAspect: 0.3}}
	for b := 0; b < tB; b++ {
		mask := strat.Mask(r, tImg/tPatch)
		v, k := masking.Indices(mask)
		vis, msk = append(vis, v...), append(msk, k...)
		for _, i := range k {
			mf[b*n+int(i)] = 1
		}
	}
	return []*tensors.Tensor{floatT(dtype, imgs, tB, 1, tImg, tImg), tensors.FromFlatDataAndDimensions(vis, tB, n-tM),
		tensors.FromFlatDataAndDimensions(msk, tB, tM), floatT(dtype, mf, tB, n)}
}

func floatT(dtype dtypes.DType, v []float64, dims ...int) *tensors.Tensor {
	if dtype == dtypes.Float64 {
		return tensors.FromFlatDataAndDimensions(slices.Clone(v), dims...)
	}
	w := make([]float32, len(v))
	for i, x := range v {
		w[i] = float32(x)
	}
	return tensors.FromFlatDataAndDimensions(w, dims...)
}

func shapesOf(ts []*tensors.Tensor) []shapes.Shape {
	var out []shapes.Shape
	for _, t := range ts {
		out = append(out, t.Shape())
	}
	return out
}

func declare(t testing.TB, be compute.Backend, m *Model, dtype dtypes.DType, data []*tensors.Tensor) (*nn.ParamSet, []*tensors.Tensor) {
	t.Helper()
	ps, err := nn.Declare(be, dtype, false, shapesOf(data), func(s nn.Scope, in []*Node) []*Node {
		l, _ := m.Loss(s, in)
		return []*Node{l}
	})
	if err != nil {
		t.Fatal(err)
	}
	return ps, ps.InitParams(dtype, 3)
}

func run(t testing.TB, be compute.Backend, ps *nn.ParamSet, params []*tensors.Tensor, dtype dtypes.DType, data []*tensors.Tensor, fn nn.BuildFn, capture ...string) []*tensors.Tensor {
	t.Helper()
	prog, err := nn.Compile(be, ps, dtype, false, shapesOf(data), fn, capture...)
	if err != nil {
		t.Fatal(err)
	}
	defer prog.Finalize()
	out, err := prog.Run(params, nil, data...)
	if err != nil {
		t.Fatal(err)
	}
	return out
}

// The decoder's output does not change when the visible patches change while Z_m is held fixed; it does
// change with Z_m and with the masked positions (so the comparison can fail).
func TestDecoderIgnoresVisiblePatches(t *testing.T) {
	be := nntest.Go(t)
	m := model(t, "cae", "transformer", true)
	a := batch(1, dtypes.Float32)
	ps, params := declare(t, be, m, dtypes.Float32, a)
	r := rand.New(rand.NewPCG(9, 9))
	zmv := make([]float32, tB*tM*16)
	for i := range zmv {
		zmv[i] = float32(r.NormFloat64())
	}
	zm := tensors.FromFlatDataAndDimensions(zmv, tB, tM, 16)
	decode := func(s nn.Scope, in []*Node) []*Node {
		pm := nn.GatherRows(nn.PosTable(s, m.ViT.Grid(), m.ViT.Dim), in[InMasked])
		// The full CAE graph is built too, so the decoder lives in the same model as the encoder.
		l, _ := m.Loss(s, in[:4])
		return []*Node{m.Decoder.(decoder.Latent).DecodeMasked(s.Sub("decoder"), in[4], pm, m.ViT.Heads, m.Target.Dim()), l}
	}
	// b: same masks, visible patches replaced by other pixels (masked patches unchanged).
	b := batch(1, dtypes.Float32)
	imgs := nn.Float32s(b[InImages])
	vis := tensors.MustCopyFlatData[int64](b[InVisible])
	g := tImg / tPatch
	for s := 0; s < tB; s++ {
		for _, p := range vis[s*(g*g-tM) : (s+1)*(g*g-tM)] {
			py, px := int(p)/g, int(p)%g
			for y := 0; y < tPatch; y++ {
				for x := 0; x < tPatch; x++ {
					imgs[s*tImg*tImg+(py*tPatch+y)*tImg+px*tPatch+x] += 0.5
				}
			}
		}
	}
	b[InImages] = tensors.FromFlatDataAndDimensions(imgs, tB, 1, tImg, tImg)
	outA := run(t, be, ps, params, dtypes.Float32, append(slices.Clone(a), zm), decode)
	outB := run(t, be, ps, params, dtypes.Float32, append(slices.Clone(b), tensors.FromFlatDataAndDimensions(slices.Clone(zmv), tB, tM, 16)), decode)
	if !slices.Equal(nn.Float32s(outA[0]), nn.Float32s(outB[0])) {
		t.Fatal("decoder output changed when only the visible patches changed (Z_m fixed)")
	}
	if nn.Float32s(outA[1])[0] == nn.Float32s(outB[1])[0] {
		t.Fatal("the loss did not change with the visible patches: the test's images did not change")
	}
	zmv[0] += 1
	outC := run(t, be, ps, params, dtypes.Float32, append(batch(1, dtypes.Float32), tensors.FromFlatDataAndDimensions(zmv, tB, tM, 16)), decode)
	if slices.Equal(nn.Float32s(outA[0]), nn.Float32s(outC[0])) {
		t.Fatal("decoder output does not depend on Z_m")
	}
}

// The regressor never updates Z_v: in every regressor layer the keys/values' visible part is exactly the
// encoder's Z_v.
func TestRegressorLeavesZvUnchanged(t *testing.T) {
	be := nntest.Go(t)
	m := model(t, "cae", "transformer", true)
	data := batch(2, dtypes.Float32)
	ps, params := declare(t, be, m, dtypes.Float32, data)
	caps := []string{"z_v", "regressor.blocks.0.kv", "regressor.blocks.1.kv", "z_m"}
	out := run(t, be, ps, params, dtypes.Float32, data, func(s nn.Scope, in []*Node) []*Node {
		l, _ := m.Loss(s, in)
		return []*Node{l}
	}, caps...)
	zv := nn.Float32s(out[1])
	nv := 9 - tM
	for layer, kvT := range out[2:4] {
		kv := nn.Float32s(kvT)
		for b := 0; b < tB; b++ {
			got := kv[b*9*16 : b*9*16+nv*16]
			want := zv[b*nv*16 : (b+1)*nv*16]
			if !slices.Equal(got, want) {
				t.Fatalf("layer %d, sample %d: visible keys/values differ from Z_v", layer, b)
			}
		}
		if layer == 1 && slices.Equal(kv[nv*16:9*16], nn.Float32s(out[2])[nv*16:9*16]) {
			t.Fatal("the query part of the keys/values did not change between layers (the test would not see an update)")
		}
	}
}

// The alignment target carries no gradient: the gradient of the alignment loss equals the gradient with the
// target replaced by a constant of the same value; without StopGradient it would not (checked as control).
func TestAlignmentTargetHasNoGradient(t *testing.T) {
	be := nntest.Go(t)
	m := model(t, "cae", "transformer", true)
	data := batch(3, dtypes.Float64)
	ps, params := declare(t, be, m, dtypes.Float64, data)
	encParams := []int{}
	for i, p := range ps.Params {
		if len(p.Name) > 8 && p.Name[:8] == "encoder." {
			encParams = append(encParams, i)
		}
	}
	target := run(t, be, ps, params, dtypes.Float64, data, func(s nn.Scope, in []*Node) []*Node {
		return []*Node{m.AlignTarget(s, nn.Patchify(in[InImages], tPatch), in[InMasked])}
	})[0]
	grads := func(mode string) [][]float64 {
		d := slices.Clone(data)
		if mode == "const" {
			d = append(d, target)
		}
		out := run(t, be, ps, params, dtypes.Float64, d, func(s nn.Scope, in []*Node) []*Node {
			patches := nn.Patchify(in[InImages], tPatch)
			zm, _ := m.Regress(s, patches, in)
			var tgt *Node
			switch mode {
			case "model":
				tgt = m.AlignTarget(s, patches, in[InMasked])
			case "const":
				tgt = in[4]
			case "nostop":
				tgt = DropCls(m.Encoder.Encode(s.Sub("encoder").Branch("align"), m.ViT, nn.ViTInput{Patches: patches, Keep: in[InMasked]}))
			}
			loss := nn.MSE(zm, tgt)
			var wrt []*Node
			for _, i := range encParams {
				wrt = append(wrt, s.Param(ps.Params[i].Name, ps.Params[i].Dims, ps.Params[i].Init))
			}
			return Gradient(loss, wrt...)
		})
		var g [][]float64
		for _, o := range out {
			g = append(g, nn.Float64s(o))
		}
		return g
	}
	gm, gc, gn := grads("model"), grads("const"), grads("nostop")
	maxDiff, maxCtl, norm := 0.0, 0.0, 0.0
	for i := range gm {
		for j := range gm[i] {
			maxDiff = math.Max(maxDiff, math.Abs(gm[i][j]-gc[i][j]))
			maxCtl = math.Max(maxCtl, math.Abs(gm[i][j]-gn[i][j]))
			norm = math.Max(norm, math.Abs(gm[i][j]))
		}
	}
	t.Logf("encoder grad: max |model - constant target| %.2g, max |model - no stopgrad| %.2g, max |grad| %.2g", maxDiff, maxCtl, norm)
	if norm == 0 {
		t.Fatal("the alignment loss gives the encoder no gradient at all (it should, through Z_v)")
	}
	if maxDiff > 1e-12 {
		t.Fatalf("gradient flows through the alignment target: differs from a constant target by %.3g", maxDiff)
	}
	if maxCtl < 1e-6 {
		t.Fatal("control failed: without StopGradient the gradient should differ")
	}
}

// BEiT's encoder sees the mask token exactly at the masked positions and the patch embedding elsewhere.
func TestBEiTMaskTokensAtMaskedPositions(t *testing.T) {
	be := nntest.Go(t)
	m := model(t, "beit", "linear", true)
	data := batch(4, dtypes.Float32)
	ps, params := declare(t, be, m, dtypes.Float32, data)
	out := run(t, be, ps, params, dtypes.Float32, data, func(s nn.Scope, in []*Node) []*Node {
		l, _ := m.Loss(s, in)
		return []*Node{l}
	}, "encoder.patch_tokens", "encoder.masked_tokens")
	pt, mt := nn.Float32s(out[1]), nn.Float32s(out[2])
	i, _ := ps.Index("encoder.mask_token")
	tok := nn.Float32s(params[i])
	mf := nn.Float32s(data[InMaskF])
	for b := 0; b < tB; b++ {
		for p := 0; p < 9; p++ {
			row := mt[(b*9+p)*16 : (b*9+p+1)*16]
			if mf[b*9+p] == 1 {
				if !slices.Equal(row, tok) {
					t.Fatalf("sample %d patch %d is masked but the encoder does not see the mask token", b, p)
				}
			} else if !slices.Equal(row, pt[(b*9+p)*16:(b*9+p+1)*16]) {
				t.Fatalf("sample %d patch %d is visible but the encoder does not see its embedding", b, p)
			}
		}
	}
}

// A short training run of each method lowers its loss (tiny model, synthetic images, both backends).
func TestMethodsTrain(t *testing.T) {
	cases := []struct{ method, dec string }{{"cae", "transformer"}, {"cae", "linear"}, {"beit", "linear"}, {"mae", "mae"}}
	for _, nb := range nntest.All(t) {
		for _, c := range cases {
			t.Run(nb.Name+"/"+c.method+"-"+c.dec, func(t *testing.T) {
				m := model(t, c.method, c.dec, true)
				data := batch(5, dtypes.Float32)
				tr, err := nn.NewTrainer(nb.Backend, dtypes.Float32, m.Loss, shapesOf(data), nn.DefaultAdamW(), 1)
				if err != nil {
					t.Fatal(err)
				}
				defer tr.Finalize()
				var first, last float64
				for i := 0; i < 40; i++ {
					l, _, met, err := tr.TrainStep(3e-3, batch(5, dtypes.Float32)...)
					if err != nil {
						t.Fatal(err)
					}
					if len(met) != len(m.MetricNames()) {
						t.Fatalf("%d metrics, names %v", len(met), m.MetricNames())
					}
					if i == 0 {
						first = l
					}
					last = l
				}
				t.Logf("loss %.4f -> %.4f", first, last)
				if !(last < 0.8*first) {
					t.Fatalf("loss did not fall: %.4f -> %.4f", first, last)
				}
			})
		}
	}
}

func TestCheckRejectsBadCombinations(t *testing.T) {
	base := func() *Model { return model(t, "cae", "transformer", true) }
	cases := []struct {
		edit func(m *Model)
		want string
	}{
		{func(m *Model) { m.Regressor = nil }, `method.name = "cae" needs regressor.name = "cae"`},
		{func(m *Model) { m.Decoder = buildDecoder(t, "mae") }, `method.name = "cae": decoder.name = "mae"; allowed: linear, transformer`},
		{func(m *Model) { m.Method, m.Name = BEiT{}, "beit" }, `method.name = "beit": regressor.name must be "none"`},
		{func(m *Model) { m.Method, m.Name, m.Regressor = MAE{}, "mae", nil }, `method.name = "mae": decoder.name = "transformer"; allowed: mae`},
		{func(m *Model) { m.Method, m.Name, m.Regressor = BEiT{}, "beit", nil }, `method.name = "beit": decoder.name = "transformer"; allowed: linear`},
		{func(m *Model) { m.NumMasked = 9 }, "masking.num_masked = 9: must be < 9 patches (1..8)"},
	}
	for _, c := range cases {
		m := base()
		c.edit(m)
		if err := m.Check(); err == nil || err.Error()[:len(c.want)] != c.want {
			t.Errorf("got %v, want prefix %q", err, c.want)
		}
	}
}

// The supervised comparator (Fig. 6's "attends to the object") learns labels: its loss falls and its
// training accuracy rises on a fixed batch.
func TestSupervisedTrains(t *testing.T) {
	m := model(t, "supervised", "linear", false)
	imgs := batch(6, dtypes.Float32)[InImages]
	labels := tensors.FromFlatDataAndDimensions([]int64{0, 2}, tB)
	tr, err := nn.NewTrainer(nntest.Go(t), dtypes.Float32, m.Loss, m.DataShapes(tB), nn.DefaultAdamW(), 1)
	if err != nil {
		t.Fatal(err)
	}
	defer tr.Finalize()
	var first, last float64
	var acc []float64
	for i := 0; i < 30; i++ {
		l, _, met, err := tr.TrainStep(3e-3, imgs, labels)
		if err != nil {
			t.Fatal(err)
		}
		if i == 0 {
			first = l
		}
		last, acc = l, met
	}
	t.Logf("loss %.4f -> %.4f, train accuracy %.2f", first, last, acc[0])
	if last > 0.7*first || acc[0] != 1 {
		t.Fatalf("supervised did not learn: loss %.4f -> %.4f, accuracy %v", first, last, acc)
	}
}
