package method

import (
	"crypto/sha256"
	"encoding/json"
	"fmt"
	"math"
	"math/rand/v2"
	"os"
	"slices"
	"strings"
	"testing"

	"github.com/gomlx/compute"
	"github.com/gomlx/compute/dtypes"
	. "github.com/gomlx/gomlx/core/graph"
	"github.com/gomlx/gomlx/core/tensors"
	"mimlab/components/decoder"
	"mimlab/components/targets"
	"mimlab/nn"
	"mimlab/nn/nntest"
)

// Whole-model parity of the training steps of CAE, BEiT and MAE with an independent PyTorch implementation
// (issue 17, point 3).
//
// testdata/<method>_step_init.safetensors holds the tiny model's parameters ("param.<mimlab name>", q/k/v
// unfused) and one batch ("input.*"); it is written by this file's writeStepInit under MIMLAB_WRITE_PARITY=1.
// testdata/gen_step.py (PyTorch, float32, CPU) reads it and writes testdata/<method>_step_expected.safetensors:
// the loss terms and every gradient at step 0, the loss of each of the 10 AdamW steps and every parameter
// after them. Regenerate them with
//
//	MIMLAB_WRITE_PARITY=1 go test -count=1 -run 'StepParity' ./components/method
//	/usr/bin/python3 components/method/testdata/gen_step.py
//
// The tests themselves need no Python: the files are committed.

const stepTol = 1e-4

// stepCase is one method's parity test: the tiny model of model(t, Method, Decoder, true) and what is
// special about it.
type stepCase struct {
	Method, Decoder string
	// Metrics are the first metric names the loss must report, each compared as loss.<name>.
	Metrics []string
	// Nulls is how many parameters have a gradient that is zero by the architecture (see nullGradient).
	Nulls func(m *Model) int
}

func (c stepCase) initFile() string     { return "testdata/" + c.Method + "_step_init.safetensors" }
func (c stepCase) expectedFile() string { return "testdata/" + c.Method + "_step_expected.safetensors" }

var (
	caeStep = stepCase{Method: "cae", Decoder: "transformer", Metrics: []string{"target_loss", "align_loss"},
		Nulls: func(m *Model) int { return m.Regressor.Depth }}
	beitStep = stepCase{Method: "beit", Decoder: "linear", Metrics: []string{"target_loss"}, Nulls: func(*Model) int { return 0 }}
	maeStep  = stepCase{Method: "mae", Decoder: "mae", Metrics: []string{"target_loss"}, Nulls: func(*Model) int { return 0 }}
)

// stepConfig is what the PyTorch script needs to know of the model and the optimiser; it travels in the
// init file's metadata ("config"), and the test checks it against the model it builds. REG_DEPTH and ALIGN
// are CAE's (0 for the others); DEC_DEPTH is 0 for a head-only decoder.
type stepConfig struct {
	METHOD, DECODER                 string
	B, C, IMG, P, D, H, DEPTH       int
	RATIO                           float64
	LS                              float64
	REG_DEPTH, DEC_DEPTH, M         int
	ALIGN                           float64
	NORMALIZE                       bool
	LR, BETA1, BETA2, EPS, WD, CLIP float64
	STEPS                           int
}

// stepModel is the tiny model of model(t, c.Method, c.Decoder, true) (12x12 images, 3x3 patches, 4 masked,
// dim 16, depth 2, 2 heads; CAE: regressor depth 2, align weight 2; decoder depth 1; per-patch normalised
// pixel targets) with
// every drop path set to 0 explicitly, so the step is deterministic.
func stepModel(t testing.TB, c stepCase) (*Model, stepConfig) {
	t.Helper()
	m := model(t, c.Method, c.Decoder, true)
	m.Encoder.DropPath = 0
	m.ViT.DropPath = 0
	cfg := stepConfig{METHOD: c.Method, DECODER: c.Decoder}
	if m.Regressor != nil {
		m.Regressor.DropPath = 0
		cfg.REG_DEPTH = m.Regressor.Depth
	}
	if cae, ok := m.Method.(CAE); ok {
		cfg.ALIGN = cae.AlignWeight
	}
	dc := mustNew(t)(decoder.Registry.New(c.Decoder))
	sc := nn.StackConfig{Depth: 1, MLPRatio: 2, LayerScale: 0.1, DropPath: 0}
	switch d := dc.(type) {
	case *decoder.TransformerConfig:
		d.StackConfig = sc
		cfg.DEC_DEPTH = sc.Depth
	case *decoder.MAEConfig:
		d.StackConfig = sc
		cfg.DEC_DEPTH = sc.Depth
	case *decoder.LinearConfig:
	default:
		t.Fatalf("decoder %T: the parity script knows transformer, mae and linear", dc)
	}
	dec, err := decoder.Registry.Build(c.Decoder, dc)
	if err != nil {
		t.Fatal(err)
	}
	m.Decoder = dec
	if err := m.Check(); err != nil {
		t.Fatal(err)
	}
	px, ok := m.Target.(targets.Pixel)
	if !ok {
		t.Fatalf("target is %T, want targets.Pixel", m.Target)
	}
	px.Normalize = true // per-patch normalised pixels, as the shipped experiments train
	m.Target = px
	if cfg.DEC_DEPTH > 0 && sc.MLPRatio != m.ViT.MLPRatio {
		t.Fatalf("the script uses one MLP ratio; decoder %v, encoder %v", sc.MLPRatio, m.ViT.MLPRatio)
	}
	opt := nn.DefaultAdamW()
	v := m.ViT
	cfg.B, cfg.C, cfg.IMG, cfg.P, cfg.D, cfg.H, cfg.DEPTH = tB, v.Channels, v.ImageSize, v.PatchSize, v.Dim, v.Heads, v.Depth
	cfg.RATIO, cfg.LS, cfg.M, cfg.NORMALIZE = v.MLPRatio, v.LayerScale, m.NumMasked, px.Normalize
	cfg.LR, cfg.BETA1, cfg.BETA2, cfg.EPS, cfg.WD, cfg.CLIP, cfg.STEPS = 1e-3, opt.Beta1, opt.Beta2, opt.Eps, opt.WeightDecay, opt.Clip, 10
	return m, cfg
}

var stepInputs = []string{"input.images", "input.visible", "input.masked", "input.maskF"}

// writeStepInit writes c's init fixture: parameters from InitParams(seed 3) with N(0, 0.05^2) noise added
// to every 1-D parameter (biases, LayerNorm weights and LayerScale gammas start at exactly 0, 1 and 0.1, where
// an implementation that dropped a bias or swapped two LayerNorms would still match at step 0), plus
// batch(11).
func writeStepInit(t *testing.T, c stepCase) {
	m, cfg := stepModel(t, c)
	data := batch(11, dtypes.Float32)
	tr, err := nn.NewTrainer(nntest.Go(t), dtypes.Float32, m.Loss, shapesOf(data), nn.DefaultAdamW(), 3)
	if err != nil {
		t.Fatal(err)
	}
	defer tr.Finalize()
	r := rand.New(rand.NewPCG(17, 17))
	arrays := map[string]nn.Array{}
	for i, spec := range tr.Set.Params {
		v := nn.Float32s(tr.Params[i])
		if len(spec.Dims) == 1 {
			for j := range v {
				v[j] += float32(0.05 * r.NormFloat64())
			}
		}
		arrays["param."+spec.Name] = nn.Array{Shape: slices.Clone(spec.Dims), F32: v}
	}
	for i, name := range stepInputs {
		a := nn.Array{Shape: slices.Clone(data[i].Shape().Dimensions)}
		if data[i].DType() == dtypes.Int64 {
			a.I64 = tensors.MustCopyFlatData[int64](data[i])
		} else {
			a.F32 = nn.Float32s(data[i])
		}
		arrays[name] = a
	}
	cj, _ := json.Marshal(cfg)
	meta := map[string]string{"generator": "components/method/parity_step_test.go (MIMLAB_WRITE_PARITY=1)",
		"config": string(cj), "metrics": strings.Join(m.MetricNames(), ",")}
	if err := nn.SaveSafetensors(c.initFile(), arrays, meta); err != nil {
		t.Fatal(err)
	}
	t.Logf("wrote %s: %d parameters (%d values); now run /usr/bin/python3 components/method/testdata/gen_step.py",
		c.initFile(), len(tr.Set.Params), tr.Set.NumValues())
}

// relDiff is max|got-want| / (max|want| + 1e-8).
func relDiff(got, want []float32) float64 {
	d, n := 0.0, 0.0
	for i := range want {
		d = math.Max(d, math.Abs(float64(got[i])-float64(want[i])))
		n = math.Max(n, math.Abs(float64(want[i])))
	}
	return d / (n + 1e-8)
}

func maxAbs(v []float32) float64 {
	m := 0.0
	for _, x := range v {
		m = math.Max(m, math.Abs(float64(x)))
	}
	return m
}

// TestCAEStepParity checks mimlab's whole CAE training step against PyTorch (testdata/gen_step.py) from
// the same parameters and batch: the step-0 loss terms (target, alignment, total), the gradient of every
// parameter, the loss of each of 10 AdamW steps (lr 1e-3 constant, DefaultAdamW: betas 0.9/0.999, eps 1e-8,
// weight decay 0.05 off 1-D parameters and biases, global-norm clip 3) and every parameter after them;
// each within relative error 1e-4 (max |a-b| / max |b| per tensor), on every backend.
func TestCAEStepParity(t *testing.T) { stepParity(t, caeStep) }

// TestBEiTStepParity is TestCAEStepParity for BEiT: mask tokens inside the encoder, a linear head on the
// masked positions, the pixel loss.
func TestBEiTStepParity(t *testing.T) { stepParity(t, beitStep) }

// TestMAEStepParity is TestCAEStepParity for MAE: the encoder on the visible patches, MAE's decoder over the
// visible tokens and mask tokens at every place, the pixel loss on the masked places.
func TestMAEStepParity(t *testing.T) { stepParity(t, maeStep) }

func stepParity(t *testing.T, c stepCase) {
	if os.Getenv("MIMLAB_WRITE_PARITY") == "1" {
		writeStepInit(t, c)
		t.Skip("wrote the init fixture; regenerate the expected one with gen_step.py")
	}
	initA, meta, err := nn.LoadSafetensors(c.initFile())
	if err != nil {
		t.Fatal(err)
	}
	want, wmeta, err := nn.LoadSafetensors(c.expectedFile())
	if err != nil {
		t.Fatal(err)
	}
	m, cfg := stepModel(t, c)
	var fcfg stepConfig
	if err := json.Unmarshal([]byte(meta["config"]), &fcfg); err != nil {
		t.Fatal(err)
	}
	if fcfg != cfg {
		t.Fatalf("the fixture was made for %+v, the model is %+v: regenerate the fixtures", fcfg, cfg)
	}
	raw, err := os.ReadFile(c.initFile())
	if err != nil {
		t.Fatal(err)
	}
	if h := fmt.Sprintf("%x", sha256.Sum256(raw)); wmeta["init_sha256"] != h {
		t.Fatalf("%s was made from an init file with sha256 %q, the committed one is %s: rerun gen_step.py", c.expectedFile(), wmeta["init_sha256"], h)
	}
	t.Logf("expected values from %s, torch %s", wmeta["generator"], wmeta["torch"])
	for _, nb := range nntest.All(t) {
		t.Run(nb.Name, func(t *testing.T) { checkStep(t, nb.Backend, c, m, cfg, initA, want) })
	}
}

// nullGradient says whether a parameter's gradient is zero for every input by the architecture: the
// regressor's key LayerNorm bias beta adds W_k beta to every key, which shifts all the logits of a query by
// the same q . W_k beta, and softmax ignores such a shift. Both implementations return float32 rounding
// noise for it (1e-9..1e-8 here, against gradients up to 57), and AdamW turns noise into lr-sized steps of
// random sign, so its values cannot be compared: its gradient must instead be numerically zero on both
// sides, and its 10 steps bounded by 2 lr each.
func nullGradient(name string) bool { return strings.HasSuffix(name, "norm1_k_cross.bias") }

func checkStep(t *testing.T, be compute.Backend, c stepCase, m *Model, cfg stepConfig, initA, want map[string]nn.Array) {
	var data []*tensors.Tensor // per backend: a tensor used on one backend cannot be used on another
	for _, name := range stepInputs {
		a, ok := initA[name]
		if !ok {
			t.Fatalf("init fixture lacks %s", name)
		}
		if a.I64 != nil {
			data = append(data, tensors.FromFlatDataAndDimensions(slices.Clone(a.I64), a.Shape...))
		} else {
			data = append(data, tensors.FromFlatDataAndDimensions(slices.Clone(a.F32), a.Shape...))
		}
	}
	defer nn.Free(data...)
	tr, err := nn.NewTrainer(be, dtypes.Float32, m.Loss, shapesOf(data), nn.DefaultAdamW(), 1)
	if err != nil {
		t.Fatal(err)
	}
	defer tr.Finalize()
	if len(tr.Set.Rands) != 0 {
		t.Fatalf("the model still draws random inputs %v: a drop path is not 0", tr.Set.Rands)
	}
	ps := tr.Set
	for i, spec := range ps.Params {
		a, ok := initA["param."+spec.Name]
		if !ok {
			t.Fatalf("init fixture lacks param.%s", spec.Name)
		}
		if !slices.Equal(a.Shape, spec.Dims) {
			t.Fatalf("param.%s: fixture shape %v, model %v", spec.Name, a.Shape, spec.Dims)
		}
		nn.Free(tr.Params[i])
		tr.Params[i] = nn.TensorOf(dtypes.Float32, a.F32, spec.Dims...)
	}
	if n := len(ps.Params) + len(stepInputs); len(initA) != n {
		t.Fatalf("init fixture has %d tensors, the model %d parameters + %d inputs", len(initA), len(ps.Params), len(stepInputs))
	}
	expect := func(name string, n int) []float32 {
		t.Helper()
		a, ok := want[name]
		if !ok {
			t.Fatalf("expected fixture lacks %s", name)
		}
		if len(a.F32) != n {
			t.Fatalf("%s: expected fixture has %d values, mimlab %d", name, len(a.F32), n)
		}
		return a.F32
	}
	var failed []string
	sides := []string{"mimlab", "PyTorch"}
	check := func(cat, name string, got []float32, worst *float64) {
		t.Helper()
		d := relDiff(got, expect(name, len(got)))
		*worst = math.Max(*worst, d)
		if d > stepTol || math.IsNaN(d) {
			failed = append(failed, fmt.Sprintf("%s %s: relative difference %.3g", cat, name, d))
		}
	}

	// Step 0: loss, metrics and every gradient, in one training-mode graph.
	names := m.MetricNames()
	if len(names) < len(c.Metrics) || !slices.Equal(names[:len(c.Metrics)], c.Metrics) {
		t.Fatalf("metrics %v, want them to start with %v", names, c.Metrics)
	}
	prog, err := nn.Compile(be, ps, dtypes.Float32, true, shapesOf(data), func(s nn.Scope, in []*Node) []*Node {
		loss, metrics := m.Loss(s, in)
		var wrt []*Node
		for _, p := range ps.Params {
			wrt = append(wrt, s.Param(p.Name, p.Dims, p.Init))
		}
		return append(append([]*Node{loss}, metrics...), Gradient(loss, wrt...)...)
	})
	if err != nil {
		t.Fatal(err)
	}
	out, err := prog.Run(tr.Params, nil, data...)
	prog.Finalize()
	if err != nil {
		t.Fatal(err)
	}
	var lossWorst, gradWorst, stepWorst, paramWorst float64
	check("loss", "loss.total", nn.Float32s(out[0]), &lossWorst)
	for i, name := range names {
		check("loss", "loss."+name, nn.Float32s(out[1+i]), &lossWorst)
	}
	grads := out[1+len(names):]
	gmax := 0.0 // the largest reference gradient entry, the scale of "numerically zero"
	for _, spec := range ps.Params {
		for _, g := range expect("grad."+spec.Name, spec.Size()) {
			gmax = math.Max(gmax, math.Abs(float64(g)))
		}
	}
	nulls, nullMax := 0, 0.0
	for i, spec := range ps.Params {
		got := nn.Float32s(grads[i])
		if !nullGradient(spec.Name) {
			check("gradient", "grad."+spec.Name, got, &gradWorst)
			continue
		}
		nulls++
		for side, g := range [][]float32{got, expect("grad."+spec.Name, len(got))} {
			d := maxAbs(g)
			nullMax = math.Max(nullMax, d)
			if d > 1e-6*gmax {
				failed = append(failed, fmt.Sprintf("gradient grad.%s: should be zero, %s's is %.3g (largest gradient %.3g)", spec.Name, sides[side], d, gmax))
			}
		}
	}
	nn.Free(out...)
	if want := c.Nulls(m); nulls != want {
		t.Fatalf("%d parameters with a null gradient, want %d (each CAE regressor block's norm1_k_cross.bias)", nulls, want)
	}

	// cfg.STEPS AdamW steps at a constant learning rate on the same batch.
	losses := make([]float32, cfg.STEPS)
	for i := range losses {
		l, gn, _, err := tr.TrainStep(cfg.LR, data...)
		if err != nil {
			t.Fatal(err)
		}
		if i == 0 {
			check("loss", "grad_norm", []float32{float32(gn)}, &lossWorst)
		}
		losses[i] = float32(l)
	}
	wl := expect("losses", len(losses))
	for i := range losses { // each step's loss alone, so a late drift is not hidden by a larger first loss
		d := math.Abs(float64(losses[i])-float64(wl[i])) / (math.Abs(float64(wl[i])) + 1e-8)
		stepWorst = math.Max(stepWorst, d)
		if d > stepTol {
			failed = append(failed, fmt.Sprintf("step %d loss %.7g, PyTorch %.7g (relative %.3g)", i, losses[i], wl[i], d))
		}
	}
	for i, spec := range ps.Params {
		name := fmt.Sprintf("step%d.%s", cfg.STEPS, spec.Name)
		got := nn.Float32s(tr.Params[i])
		if !nullGradient(spec.Name) {
			check("parameter", name, got, &paramWorst)
			continue
		}
		// Moved by noise only: at most 2 lr a step from its start, on both sides.
		start := initA["param."+spec.Name].F32
		for side, p := range [][]float32{got, expect(name, len(got))} {
			for j := range p {
				if d := math.Abs(float64(p[j] - start[j])); d > 2*cfg.LR*float64(cfg.STEPS) {
					failed = append(failed, fmt.Sprintf("parameter %s: %s moved it by %.3g in %d steps, more than noise can", name, sides[side], d, cfg.STEPS))
					break
				}
			}
		}
	}
	t.Logf("max relative difference vs PyTorch: loss terms %.2g, gradients %.2g (%d tensors; %d null ones at most %.2g, largest gradient %.3g), step losses %.2g, parameters after %d steps %.2g",
		lossWorst, gradWorst, len(ps.Params)-nulls, nulls, nullMax, gmax, stepWorst, cfg.STEPS, paramWorst)
	if len(failed) > 0 {
		t.Fatalf("mimlab's %s step differs from PyTorch beyond %g in %d tensors:\n%s", c.Method, stepTol, len(failed), strings.Join(failed, "\n"))
	}
}
