package method

import (
	"crypto/sha256"
	"fmt"
	"math"
	"os"
	"slices"
	"strings"
	"testing"

	"github.com/gomlx/compute"
	"github.com/gomlx/compute/dtypes"
	. "github.com/gomlx/gomlx/core/graph"
	"github.com/gomlx/gomlx/core/tensors"
	"mimlab/nn"
	"mimlab/nn/nntest"
)

// bf16 mixed precision (train.precision = "bf16", issue 34) on CAE's whole training step, at the tiny size of
// TestCAEStepParity and from the same fixture (testdata/cae_step_init.safetensors), on every backend that
// runs bf16 (the others must refuse it). Three comparisons, per tensor (relDiff: max |a-b| / max |b|):
//
//   - mimlab bf16 against mimlab float32: how far bf16 moves the loss terms and the gradients (bounded, and
//     not zero: a step computed in float32 by mistake fails);
//   - that error against PyTorch's own, bf16 under torch.autocast(device_type="cpu", dtype=torch.bfloat16)
//     (testdata/gen_step_bf16.py, LayerNorm, softmax and losses in float32) against PyTorch float32
//     (testdata/cae_step_expected.safetensors): mimlab's bf16 must cost about what autocast's does, worst
//     tensor and median tensor alike, neither much less (something is not in bf16) nor much more (something
//     else is);
//   - mimlab bf16 against PyTorch bf16 directly, and the Trainer's 10 AdamW step losses under WithPrecision.
//     These agree only to bf16's noise, not to float32's 1e-4: the two round at slightly different places
//     (CAE's attention scales q in bf16 before QK^T, mimlab scales the float32 logits; PyTorch adds a
//     Linear's bias inside its bf16 GEMM, mimlab after widening) and accumulate in different orders, and a
//     gradient sums many such roundings; so they catch a structural error (a term lost, a wrong op), not a
//     misplaced rounding, which the previous comparison catches.
//
// Measured on the go backend (2026-12-04, logged by the test): mimlab bf16 vs float32: loss terms 4.8e-4,
// gradients worst 4.5e-2 (decoder q.weight, the most sensitive tensor in PyTorch too), median 3.8e-3; PyTorch's autocast vs
// float32: loss terms 1.3e-3, gradients worst 3.9e-2, median 5.1e-3; mimlab bf16 vs PyTorch bf16: loss terms
// 1.8e-3, gradients 8.4e-2, step losses 1.5e-3. The tolerances are about 2x those.
const (
	bf16LossTol  = 3e-3 // loss terms: mimlab bf16 vs mimlab float32, and vs PyTorch bf16
	bf16GradTol  = 0.1  // gradients: mimlab bf16 vs mimlab float32
	bf16TorchTol = 0.15 // gradients: mimlab bf16 vs PyTorch bf16
	bf16StepTol  = 3e-3 // each of 10 AdamW steps' loss vs PyTorch bf16
	bf16Floor    = 1e-4 // the least bf16 must move the loss terms and the gradients from float32
	bf16NullTol  = 1e-2 // a null gradient (nullGradient) in bf16: rounding noise, relative to the largest gradient
	// mimlab's bf16 error (vs float32) over PyTorch's, worst tensor and median tensor: within [1/ratio, ratio].
	bf16ErrRatio = 2.5
)

// stepOutputs runs the step-0 graph (loss, metrics, every gradient) of m under precision p.
func stepOutputs(t *testing.T, be compute.Backend, m *Model, ps *nn.ParamSet, params, data []*tensors.Tensor, p nn.Precision) (loss []float32, metrics, grads [][]float32) {
	t.Helper()
	prog, err := nn.Compile(be, ps, dtypes.Float32, true, shapesOf(data), func(s nn.Scope, in []*Node) []*Node {
		s.Builder().Precision = p
		l, ms := m.Loss(s, in)
		var wrt []*Node
		for _, q := range ps.Params {
			wrt = append(wrt, s.Param(q.Name, q.Dims, q.Init))
		}
		return append(append([]*Node{l}, ms...), Gradient(l, wrt...)...)
	})
	if err != nil {
		t.Fatal(err)
	}
	defer prog.Finalize()
	out, err := prog.Run(params, nil, data...)
	if err != nil {
		t.Fatal(err)
	}
	defer nn.Free(out...)
	nm := len(m.MetricNames())
	for i, o := range out {
		v := nn.Float32s(o)
		switch {
		case i == 0:
			loss = v
		case i <= nm:
			metrics = append(metrics, v)
		default:
			grads = append(grads, v)
		}
	}
	return loss, metrics, grads
}

func TestCAEStepBF16(t *testing.T) {
	initA, _, err := nn.LoadSafetensors(caeStep.initFile())
	if err != nil {
		t.Fatal(err)
	}
	const bf16File = "testdata/cae_step_bf16_expected.safetensors"
	torchBF, meta, err := nn.LoadSafetensors(bf16File)
	if err != nil {
		t.Fatal(err)
	}
	raw, err := os.ReadFile(caeStep.initFile())
	if err != nil {
		t.Fatal(err)
	}
	if h := fmt.Sprintf("%x", sha256.Sum256(raw)); meta["init_sha256"] != h {
		t.Fatalf("%s was made from an init file with sha256 %q, the committed one is %s: rerun gen_step_bf16.py", bf16File, meta["init_sha256"], h)
	}
	t.Logf("PyTorch bf16 values from %s, torch %s (%s)", meta["generator"], meta["torch"], meta["autocast"])
	torch32, _, err := nn.LoadSafetensors(caeStep.expectedFile())
	if err != nil {
		t.Fatal(err)
	}
	m, cfg := stepModel(t, caeStep)
	for _, nb := range nntest.All(t) {
		t.Run(nb.Name, func(t *testing.T) {
			if err := nn.CheckPrecision(nb.Name, nn.BF16); err != nil {
				t.Logf("refused, as it must be: %v", err)
				return
			}
			checkBF16Step(t, nb.Backend, m, cfg, initA, torchBF, torch32)
		})
	}
}

func checkBF16Step(t *testing.T, be compute.Backend, m *Model, cfg stepConfig, initA, torchBF, torch32 map[string]nn.Array) {
	var data []*tensors.Tensor
	for _, name := range stepInputs {
		a := initA[name]
		if a.I64 != nil {
			data = append(data, tensors.FromFlatDataAndDimensions(slices.Clone(a.I64), a.Shape...))
		} else {
			data = append(data, tensors.FromFlatDataAndDimensions(slices.Clone(a.F32), a.Shape...))
		}
	}
	defer nn.Free(data...)
	tr, err := nn.NewTrainer(be, dtypes.Float32, nn.WithPrecision(nn.BF16, m.Loss), shapesOf(data), nn.DefaultAdamW(), 1)
	if err != nil {
		t.Fatal(err)
	}
	defer tr.Finalize()
	ps := tr.Set
	for i, spec := range ps.Params {
		nn.Free(tr.Params[i])
		tr.Params[i] = nn.TensorOf(dtypes.Float32, initA["param."+spec.Name].F32, spec.Dims...)
	}
	l32, m32, g32 := stepOutputs(t, be, m, ps, tr.Params, data, nn.FP32)
	l16, m16, g16 := stepOutputs(t, be, m, ps, tr.Params, data, nn.BF16)

	var failed []string
	names := append([]string{"total"}, m.MetricNames()[:2]...) // total, target_loss, align_loss
	got16 := [][]float32{l16, m16[0], m16[1]}
	got32 := [][]float32{l32, m32[0], m32[1]}
	var lossVs32, lossVsTorch, lossTorch float64
	for i, n := range names {
		want := torchBF["loss."+n].F32
		d32, dT := relDiff(got16[i], got32[i]), relDiff(got16[i], want)
		lossVs32, lossVsTorch = math.Max(lossVs32, d32), math.Max(lossVsTorch, dT)
		lossTorch = math.Max(lossTorch, relDiff(want, torch32["loss."+n].F32))
		if d32 > bf16LossTol || dT > bf16LossTol || math.IsNaN(d32+dT) {
			failed = append(failed, fmt.Sprintf("loss.%s: bf16 %.7g, float32 %.7g (%.3g), PyTorch bf16 %.7g (%.3g)", n, got16[i][0], got32[i][0], d32, want[0], dT))
		}
	}
	gmax := 0.0
	for _, g := range g32 {
		gmax = math.Max(gmax, maxAbs(g))
	}
	var errM, errT []float64 // per tensor: mimlab bf16 vs float32, PyTorch bf16 vs float32
	var gradVsTorch, nullMax float64
	for i, spec := range ps.Params {
		want, want32 := torchBF["grad."+spec.Name].F32, torch32["grad."+spec.Name].F32
		if len(want) != spec.Size() || len(want32) != spec.Size() {
			t.Fatalf("the PyTorch fixtures lack grad.%s of %d values", spec.Name, spec.Size())
		}
		if nullGradient(spec.Name) { // zero by shift invariance in exact arithmetic; bf16 leaves rounding noise
			for _, g := range [][]float32{g16[i], want} {
				nullMax = math.Max(nullMax, maxAbs(g)/gmax)
			}
			continue
		}
		d32, dT := relDiff(g16[i], g32[i]), relDiff(g16[i], want)
		errM, errT = append(errM, d32), append(errT, relDiff(want, want32))
		gradVsTorch = math.Max(gradVsTorch, dT)
		if d32 > bf16GradTol || dT > bf16TorchTol || math.IsNaN(d32+dT) {
			failed = append(failed, fmt.Sprintf("grad.%s: bf16 vs float32 %.3g (tolerance %g), vs PyTorch bf16 %.3g (tolerance %g)", spec.Name, d32, bf16GradTol, dT, bf16TorchTol))
		}
	}
	if nullMax > bf16NullTol {
		failed = append(failed, fmt.Sprintf("null gradients (norm1_k_cross.bias) reach %.3g of the largest gradient in bf16", nullMax))
	}
	worstM, worstT, medM, medT := slices.Max(errM), slices.Max(errT), median(errM), median(errT)
	if lossVs32 < bf16Floor || medM < bf16Floor {
		failed = append(failed, fmt.Sprintf("bf16 equals float32 within %.3g (loss terms) and %.3g (median gradient): nothing was computed in bf16", lossVs32, medM))
	}
	for _, r := range []struct {
		what string
		m, p float64
	}{{"worst gradient", worstM, worstT}, {"median gradient", medM, medT}} {
		if q := r.m / r.p; q > bf16ErrRatio || q < 1/bf16ErrRatio {
			failed = append(failed, fmt.Sprintf("%s error of bf16 vs float32: mimlab %.3g, PyTorch autocast %.3g (ratio %.2f, allowed %.2f..%.2f)", r.what, r.m, r.p, q, 1/bf16ErrRatio, bf16ErrRatio))
		}
	}

	// The Trainer with WithPrecision: cfg.STEPS AdamW steps on the same batch against PyTorch's under autocast.
	wl := torchBF["losses"].F32
	stepWorst := 0.0
	for i := 0; i < cfg.STEPS; i++ {
		l, _, _, err := tr.TrainStep(cfg.LR, data...)
		if err != nil {
			t.Fatal(err)
		}
		d := math.Abs(l-float64(wl[i])) / math.Abs(float64(wl[i]))
		stepWorst = math.Max(stepWorst, d)
		if d > bf16StepTol || math.IsNaN(d) {
			failed = append(failed, fmt.Sprintf("step %d loss %.7g, PyTorch bf16 %.7g (relative %.3g)", i, l, wl[i], d))
		}
	}
	t.Logf("mimlab bf16 vs float32: loss terms %.2g, gradients worst %.2g, median %.2g", lossVs32, worstM, medM)
	t.Logf("PyTorch autocast bf16 vs float32: loss terms %.2g, gradients worst %.2g, median %.2g", lossTorch, worstT, medT)
	t.Logf("mimlab bf16 vs PyTorch bf16: loss terms %.2g, gradients worst %.2g, %d AdamW step losses %.2g; null gradients %.2g of the largest (%.3g)",
		lossVsTorch, gradVsTorch, cfg.STEPS, stepWorst, nullMax, gmax)
	if len(failed) > 0 {
		t.Fatalf("bf16 CAE step beyond tolerance in %d places:\n%s", len(failed), strings.Join(failed, "\n"))
	}
}

func median(v []float64) float64 {
	s := slices.Sorted(slices.Values(v))
	if len(s) == 0 {
		return math.NaN()
	}
	return s[len(s)/2]
}
