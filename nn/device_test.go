package nn_test

import (
	"math"
	"testing"

	"github.com/gomlx/compute"
	"github.com/gomlx/compute/dtypes"
	. "github.com/gomlx/gomlx/core/graph"
	"github.com/gomlx/gomlx/core/tensors"
	"mimlab/nn"
	"mimlab/nn/nntest"
)

// TestDeviceSmoke is stage 3 of bench/gpu.sh: the smallest programs that show a device computes, on the
// backend of $MIMLAB_TEST_DEVICE (the GPU there: cuda, from a test binary built with -tags xla; go when it
// is unset, as in CI and `bench/gpu.sh --dry`), each checked against values known exactly or computed by
// the go backend:
//   - two ops, x*w + x, and the gradient of their sum with respect to w (= x);
//   - a float32 matrix product and its gradients, within 1e-5 of go's (XLA asks for HIGHEST precision, so
//     a TF32 product, about 1e-3 off, fails here);
//   - the same product with bf16 operands (train.precision = "bf16"), within two bf16 roundings of go's
//     (the engines accumulate in different orders, and XLA may keep a product's result in float32 where
//     mimlab asks for a bf16 round trip: its xla_allow_excess_precision is on by default); skipped, saying
//     so, on a backend that refuses bf16.
func TestDeviceSmoke(t *testing.T) {
	dev, name := nntest.Device(t)
	ref := nntest.Go(t)
	t.Logf("device backend %s", name)
	x := []float32{1, -2, 3, 0.5, -1.5, 2.5}
	w := []float32{0.25, 4, -1, 2, 0.75, -3}
	run := func(be compute.Backend, fn func(x, w *Node) []*Node, xs, ws []float32, xd, wd []int) [][]float32 {
		t.Helper()
		outs, err := ExecOnceN(be, fn, tensors.FromFlatDataAndDimensions(append([]float32(nil), xs...), xd...),
			tensors.FromFlatDataAndDimensions(append([]float32(nil), ws...), wd...))
		if err != nil {
			t.Fatalf("%s: %v", name, err)
		}
		defer nn.Free(outs...)
		var vals [][]float32
		for _, o := range outs {
			vals = append(vals, nn.Float32s(o))
		}
		return vals
	}
	twoOps := func(x, w *Node) []*Node {
		y := Add(Mul(x, w), x)
		return append([]*Node{y}, Gradient(ReduceAllSum(y), w)...)
	}
	got := run(dev, twoOps, x, w, []int{6}, []int{6})
	for i := range x {
		if want := x[i]*w[i] + x[i]; got[0][i] != want {
			t.Errorf("x*w+x [%d] = %v, want %v", i, got[0][i], want)
		}
		if got[1][i] != x[i] {
			t.Errorf("d/dw sum(x*w+x) [%d] = %v, want x = %v", i, got[1][i], x[i])
		}
	}

	cases := []struct {
		name string
		dt   dtypes.DType // the product's operands
		tol  float64      // relative to the largest value
	}{{"float32", dtypes.Float32, 1e-5}, {"bfloat16", dtypes.BFloat16, 1.0 / 64}}
	xs, ws := make([]float32, 64*96), make([]float32, 96*48)
	for i := range xs {
		xs[i] = float32(math.Sin(float64(i)*0.37)) * 2
	}
	for i := range ws {
		ws[i] = float32(math.Cos(float64(i)*0.11)) / 3
	}
	for _, c := range cases {
		if c.dt == dtypes.BFloat16 && !nn.SupportsPrecision(name, nn.BF16) {
			t.Logf("%s refuses bf16 (nn.CheckPrecision): bf16 product not run", name)
			continue
		}
		prod := func(x, w *Node) []*Node {
			y := ConvertDType(DotGeneral(ConvertDType(x, c.dt), []int{1}, nil, ConvertDType(w, c.dt), []int{0}, nil), dtypes.Float32)
			l := ReduceAllSum(Mul(y, y))
			return append([]*Node{y}, Gradient(l, x, w)...)
		}
		a := run(dev, prod, xs, ws, []int{64, 96}, []int{96, 48})
		b := run(ref, prod, xs, ws, []int{64, 96}, []int{96, 48})
		for k, what := range []string{"product", "gradient wrt x", "gradient wrt w"} {
			d, m := 0.0, 0.0
			for i := range b[k] {
				d = math.Max(d, math.Abs(float64(a[k][i]-b[k][i])))
				m = math.Max(m, math.Abs(float64(b[k][i])))
			}
			t.Logf("%s %s on %s vs go: %.3g relative", c.name, what, name, d/m)
			if d/m > c.tol || math.IsNaN(d) {
				t.Errorf("%s %s on %s differs from go by %.3g relative (tolerance %g)", c.name, what, name, d/m, c.tol)
			}
		}
	}
}
