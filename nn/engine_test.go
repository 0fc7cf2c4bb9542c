package nn

import (
	"fmt"
	"io"
	"math"
	"math/rand/v2"
	"strings"
	"testing"

	"github.com/gomlx/compute/dtypes"
	"github.com/gomlx/compute/shapes"
	. "github.com/gomlx/gomlx/core/graph"
	"github.com/gomlx/gomlx/core/tensors"
)

func tinyViT() ViTConfig {
	return ViTConfig{ImageSize: 12, PatchSize: 4, Channels: 1, Dim: 16, Depth: 2, Heads: 2, MLPRatio: 2, LayerScale: 0.1, DropPath: 0.1}
}

func randImages(seed uint64, b, c, hw int) *tensors.Tensor {
	r := rand.New(rand.NewPCG(seed, 0))
	v := make([]float32, b*c*hw*hw)
	for i := range v {
		v[i] = r.Float32()
	}
	return tensors.FromFlatDataAndDimensions(v, b, c, hw, hw)
}

// encoderLoss is a small training loss over the ViT on visible patches: enough to exercise every block.
func encoderLoss(c ViTConfig) LossFn {
	return func(s Scope, data []*Node) (*Node, []*Node) {
		z := ViT(s.Sub("encoder"), c, ViTInput{Patches: Patchify(data[0], c.PatchSize), Keep: data[1]})
		return MSE(z, ZerosLike(z)), nil
	}
}

func keepIdx(b, k int) *tensors.Tensor {
	v := make([]int64, 0, b*k)
	for i := 0; i < b; i++ {
		for j := 0; j < k; j++ {
			v = append(v, int64((i+2*j)%9))
		}
	}
	return tensors.FromFlatDataAndDimensions(v, b, k)
}

// Same seed, same machine: two fresh trainers take bit-identical steps (drop path included).
func TestTrainingIsBitReproducible(t *testing.T) {
	c := tinyViT()
	for _, nb := range allBackends(t) {
		t.Run(nb.name, func(t *testing.T) {
			x, keep := randImages(1, 4, 1, 12), keepIdx(4, 5)
			run := func() ([]float64, []float32) {
				tr, err := NewTrainer(nb.be, dtypes.Float32, encoderLoss(c), []shapes.Shape{x.Shape(), keep.Shape()}, DefaultAdamW(), 42)
				if err != nil {
					t.Fatal(err)
				}
				defer tr.Finalize()
				var losses []float64
				for i := 0; i < 3; i++ {
					l, _, _, err := tr.TrainStep(1e-3, x, keep)
					if err != nil {
						t.Fatal(err)
					}
					losses = append(losses, l)
				}
				return losses, Float32s(tr.Params[len(tr.Params)-3])
			}
			l1, p1 := run()
			l2, p2 := run()
			for i := range l1 {
				if math.Float64bits(l1[i]) != math.Float64bits(l2[i]) {
					t.Fatalf("step %d loss differs: %v vs %v", i, l1[i], l2[i])
				}
			}
			for i := range p1 {
				if math.Float32bits(p1[i]) != math.Float32bits(p2[i]) {
					t.Fatalf("parameter entry %d differs after 3 steps: %v vs %v", i, p1[i], p2[i])
				}
			}
			if l1[0] == l1[2] {
				t.Fatalf("loss did not change over 3 steps: %v", l1)
			}
		})
	}
}

// The ort and go backends agree on a forward pass of the encoder within 1e-4.
func TestBackendsAgreeOnForward(t *testing.T) {
	bes := allBackends(t)
	if len(bes) < 2 {
		t.Skip("needs both backends")
	}
	c := tinyViT()
	shp := []shapes.Shape{shapes.Make(dtypes.Float32, 3, 1, 12, 12), shapes.Make(dtypes.Int64, 3, 6)}
	fwd := func(s Scope, d []*Node) []*Node {
		return []*Node{ViT(s.Sub("encoder"), c, ViTInput{Patches: Patchify(d[0], c.PatchSize), Keep: d[1]})}
	}
	var outs [][]float32
	for _, nb := range bes {
		ps, err := Declare(nb.be, dtypes.Float32, false, shp, fwd)
		if err != nil {
			t.Fatal(err)
		}
		params := ps.InitParams(dtypes.Float32, 9)
		prog, err := Compile(nb.be, ps, dtypes.Float32, false, shp, fwd)
		if err != nil {
			t.Fatal(err)
		}
		o, err := prog.Run(params, nil, randImages(2, 3, 1, 12), keepIdx(3, 6)) // tensors are per backend
		if err != nil {
			t.Fatal(err)
		}
		outs = append(outs, Float32s(o[0]))
	}
	worst := 0.0
	for i := range outs[0] {
		d := math.Abs(float64(outs[0][i]-outs[1][i])) / math.Max(1, math.Abs(float64(outs[0][i])))
		worst = math.Max(worst, d)
	}
	t.Logf("go vs ort: worst relative difference %.2g over %d values", worst, len(outs[0]))
	if worst > 1e-4 {
		t.Fatalf("go and ort disagree: %.3g", worst)
	}
}

func TestScheduleWarmupCosine(t *testing.T) {
	s := Schedule{Base: 1e-3, Min: 1e-5, Warmup: 10, Total: 110}
	cases := []struct {
		step int
		want float64
	}{{0, 0}, {5, 5e-4}, {10, 1e-3}, {60, 1e-5 + 0.5*(1e-3-1e-5)}, {110, 1e-5}, {200, 1e-5}}
	for _, c := range cases {
		if got := s.At(c.step); math.Abs(got-c.want) > 1e-12 {
			t.Errorf("At(%d) = %g, want %g", c.step, got, c.want)
		}
	}
}

// Weight decay skips 1-D parameters and biases; every 2-D+ weight gets it.
func TestNoDecayGroups(t *testing.T) {
	c := tinyViT()
	x, keep := randImages(1, 2, 1, 12), keepIdx(2, 5)
	ps, err := Declare(goBackend(t), dtypes.Float32, true, []shapes.Shape{x.Shape(), keep.Shape()}, func(s Scope, d []*Node) []*Node {
		l, _ := encoderLoss(c)(s, d)
		return []*Node{l}
	})
	if err != nil {
		t.Fatal(err)
	}
	decayed := 0
	for _, p := range ps.Params {
		want := len(p.Dims) <= 1
		if p.NoDecay != want {
			t.Errorf("%s %v: NoDecay = %v, want %v", p.Name, p.Dims, p.NoDecay, want)
		}
		if !p.NoDecay {
			decayed++
		}
	}
	if decayed == 0 {
		t.Fatal("no parameter gets weight decay")
	}
}

// AdamW in the graph matches a host implementation of PyTorch's formula on a quadratic, clipping included,
// with and without per-parameter learning-rate scales (layer-wise decay: lr and decoupled decay both scale).
func TestAdamWMatchesReference(t *testing.T) {
	for _, sc := range [][]float64{nil, {0.25, 1}, {1, 0.65}} {
		t.Run(fmt.Sprint(sc), func(t *testing.T) { testAdamW(t, sc) })
	}
}

func testAdamW(t *testing.T, lrScale []float64) {
	be := goBackend(t)
	x := tensors.FromFlatDataAndDimensions([]float64{1, -2, 3, 0.5}, 4)
	loss := func(s Scope, d []*Node) (*Node, []*Node) {
		w := s.Param("w", []int{2, 4}, Init{Kind: InitConst, Value: 0.5})
		b := s.Param("b", []int{2}, Init{Kind: InitConst, Value: 0.1})
		y := Add(Einsum("ij,j->i", w, d[0]), b)
		return ReduceAllSum(Square(y)), nil
	}
	opt := Optimizer{Beta1: 0.9, Beta2: 0.999, Eps: 1e-8, WeightDecay: 0.05, Clip: 1}
	tr, err := NewTrainer(be, dtypes.Float64, loss, []shapes.Shape{x.Shape()}, opt, 1)
	if err != nil {
		t.Fatal(err)
	}
	tr.LRScale = lrScale
	scaleOf := func(i int) float64 {
		if lrScale == nil {
			return 1
		}
		return lrScale[i]
	}
	// Host reference.
	xs := []float64{1, -2, 3, 0.5}
	w, b := Float64s(tr.Params[0]), Float64s(tr.Params[1]) // start where the trainer starts
	mw, vw, mb, vb := make([]float64, 8), make([]float64, 8), make([]float64, 2), make([]float64, 2)
	for step := 1; step <= 5; step++ {
		lr := 0.01
		if _, _, _, err := tr.TrainStep(lr, x); err != nil {
			t.Fatal(err)
		}
		gw, gb := make([]float64, 8), make([]float64, 2)
		norm := 0.0
		for i := 0; i < 2; i++ {
			y := b[i]
			for j := 0; j < 4; j++ {
				y += w[i*4+j] * xs[j]
			}
			gb[i] = 2 * y
			for j := 0; j < 4; j++ {
				gw[i*4+j] = 2 * y * xs[j]
			}
		}
		for _, g := range append(append([]float64{}, gw...), gb...) {
			norm += g * g
		}
		scale := math.Min(1, opt.Clip/(math.Sqrt(norm)+1e-6))
		upd := func(p, g, m, v []float64, decay bool, ls float64) {
			lr := lr * ls
			for i := range p {
				gi := g[i] * scale
				if decay {
					p[i] -= lr * opt.WeightDecay * p[i]
				}
				m[i] = 0.9*m[i] + 0.1*gi
				v[i] = 0.999*v[i] + 0.001*gi*gi
				mh := m[i] / (1 - math.Pow(0.9, float64(step)))
				vh := v[i] / (1 - math.Pow(0.999, float64(step)))
				p[i] -= lr * mh / (math.Sqrt(vh) + 1e-8)
			}
		}
		upd(w, gw, mw, vw, true, scaleOf(0))
		upd(b, gb, mb, vb, false, scaleOf(1))
	}
	gotW, gotB := Float64s(tr.Params[0]), Float64s(tr.Params[1])
	for i := range w {
		if math.Abs(gotW[i]-w[i]) > 1e-12 {
			t.Fatalf("w[%d] = %.15g, reference %.15g", i, gotW[i], w[i])
		}
	}
	for i := range b {
		if math.Abs(gotB[i]-b[i]) > 1e-12 {
			t.Fatalf("b[%d] = %.15g, reference %.15g", i, gotB[i], b[i])
		}
	}
}

func TestSinCosTableLayout(t *testing.T) {
	g, d := 3, 8
	pe := SinCos2D(g, d)
	// token 5 is row 1, column 2; first frequency is 1.
	row := pe[5*d : 6*d]
	want := []float64{math.Sin(1), math.Sin(1 / 100.0), math.Cos(1), math.Cos(1 / 100.0), math.Sin(2), math.Sin(2 / 100.0), math.Cos(2), math.Cos(2 / 100.0)}
	for i := range want {
		if math.Abs(row[i]-want[i]) > 1e-12 {
			t.Fatalf("pe[5][%d] = %v, want %v", i, row[i], want[i])
		}
	}
}

func TestSafetensorsRoundTrip(t *testing.T) {
	path := t.TempDir() + "/w.safetensors"
	in := map[string]Array{
		"a":   {Shape: []int{2, 3}, F32: []float32{1, 2, 3, 4, 5, 6}},
		"idx": {Shape: []int{2}, I64: []int64{7, -1}},
		"s":   {Shape: []int{}, F32: []float32{3.5}},
	}
	if err := SaveSafetensors(path, in, map[string]string{"k": "v"}); err != nil {
		t.Fatal(err)
	}
	out, meta, err := LoadSafetensors(path)
	if err != nil {
		t.Fatal(err)
	}
	if meta["k"] != "v" || len(out) != 3 || out["a"].F32[5] != 6 || out["idx"].I64[1] != -1 || out["s"].F32[0] != 3.5 {
		t.Fatalf("round trip mismatch: %+v %v", out, meta)
	}
	if _, _, err := LoadSafetensors(path + ".missing"); err == nil {
		t.Fatal("missing file loaded")
	}
}

// SGD with Nesterov momentum matches PyTorch's formula: buf = mu*buf + g (+wd*p); p -= lr*(g + mu*buf).
func TestSGDNesterovMatchesReference(t *testing.T) {
	be := goBackend(t)
	x := tensors.FromFlatDataAndDimensions([]float64{1, -2, 3, 0.5}, 4)
	loss := func(s Scope, d []*Node) (*Node, []*Node) {
		w := s.Param("w", []int{1, 4}, Init{Kind: InitConst, Value: 0.5})
		return ReduceAllSum(Square(Einsum("ij,j->i", w, d[0]))), nil
	}
	opt := Optimizer{SGD: true, Beta1: 0.9, WeightDecay: 0.1}
	tr, err := NewTrainer(be, dtypes.Float64, loss, []shapes.Shape{x.Shape()}, opt, 1)
	if err != nil {
		t.Fatal(err)
	}
	xs := []float64{1, -2, 3, 0.5}
	w := Float64s(tr.Params[0])
	buf := make([]float64, 4)
	for step := 0; step < 4; step++ {
		if _, _, _, err := tr.TrainStep(0.01, x); err != nil {
			t.Fatal(err)
		}
		y := 0.0
		for j := range w {
			y += w[j] * xs[j]
		}
		for j := range w {
			g := 2*y*xs[j] + 0.1*w[j]
			buf[j] = 0.9*buf[j] + g
			w[j] -= 0.01 * (g + 0.9*buf[j])
		}
	}
	got := Float64s(tr.Params[0])
	for j := range w {
		if math.Abs(got[j]-w[j]) > 1e-12 {
			t.Fatalf("w[%d] = %.15g, reference %.15g", j, got[j], w[j])
		}
	}
}

// Without a GPU build, asking for CUDA says how to get one; never a panic.
func TestCUDAErrorWithoutGPUBuild(t *testing.T) {
	_, _, err := NewBackend("cuda", io.Discard)
	if err == nil {
		t.Skip("this binary has a working CUDA backend")
	}
	for _, w := range []string{"cuda", "-tags xla", "PJRT"} {
		if !strings.Contains(err.Error(), w) {
			t.Errorf("error %q lacks %q", err, w)
		}
	}
}

// A NaN or infinite loss is an error (the runner fails the trial with it) and leaves the parameters as
// they were.
func TestNonFiniteLossIsAnError(t *testing.T) {
	x := tensors.FromFlatDataAndDimensions([]float32{0, 0}, 2)
	loss := func(s Scope, d []*Node) (*Node, []*Node) {
		w := s.Param("w", []int{2}, Init{Kind: InitOnes})
		return Neg(ReduceAllSum(Log(Mul(w, d[0])))), nil // log 0 = -Inf
	}
	tr, err := NewTrainer(goBackend(t), dtypes.Float32, loss, []shapes.Shape{x.Shape()}, DefaultAdamW(), 1)
	if err != nil {
		t.Fatal(err)
	}
	before := Float32s(tr.Params[0])
	_, _, _, err = tr.TrainStep(1e-3, x)
	if err == nil || !strings.Contains(err.Error(), "loss is +Inf") {
		t.Fatalf("got %v", err)
	}
	if tr.Step != 0 || Float32s(tr.Params[0])[0] != before[0] {
		t.Fatal("a non-finite step changed the trainer")
	}
}
