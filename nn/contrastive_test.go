package nn

import (
	"math"
	"math/rand/v2"
	"testing"

	"github.com/gomlx/compute/dtypes"
	"github.com/gomlx/compute/shapes"
	. "github.com/gomlx/gomlx/core/graph"
	"github.com/gomlx/gomlx/core/tensors"
)

// infoNCEHost is MoCo v3's contrastive_loss written out on the host: normalise, q·kᵀ/tau, cross-entropy
// against the diagonal, times 2·tau.
func infoNCEHost(q, k []float64, b, d int, tau float64) float64 {
	unit := func(x []float64) []float64 {
		out := make([]float64, len(x))
		for i := 0; i < b; i++ {
			n := 0.0
			for j := 0; j < d; j++ {
				n += x[i*d+j] * x[i*d+j]
			}
			for j := 0; j < d; j++ {
				out[i*d+j] = x[i*d+j] / math.Sqrt(n)
			}
		}
		return out
	}
	q, k = unit(q), unit(k)
	loss := 0.0
	for i := 0; i < b; i++ {
		logits := make([]float64, b)
		mx := math.Inf(-1)
		for j := 0; j < b; j++ {
			for c := 0; c < d; c++ {
				logits[j] += q[i*d+c] * k[j*d+c] / tau
			}
			mx = math.Max(mx, logits[j])
		}
		z := 0.0
		for _, l := range logits {
			z += math.Exp(l - mx)
		}
		loss += -(logits[i] - mx - math.Log(z))
	}
	return loss / float64(b) * 2 * tau
}

// InfoNCE is the host formula on both backends (float32 to 1e-5), for several temperatures; a query whose
// key is far closer than the others' (tau small) has a loss near 0, and swapping the keys of two samples
// raises it (so the diagonal, not any pairing, is the positive).
func TestInfoNCEMatchesTheHostFormula(t *testing.T) {
	const b, d = 6, 5
	r := rand.New(rand.NewPCG(4, 4))
	q := make([]float64, b*d)
	for i := range q {
		q[i] = r.NormFloat64()
	}
	near := make([]float64, b*d) // keys close to their queries
	for i := range near {
		near[i] = q[i] + 0.05*r.NormFloat64()
	}
	swapped := append([]float64(nil), near...)
	copy(swapped[0:d], near[d:2*d])
	copy(swapped[d:2*d], near[0:d])
	cases := []struct {
		name string
		k    []float64
		tau  float64
	}{
		{"random keys, tau 0.2", func() []float64 {
			k := make([]float64, b*d)
			for i := range k {
				k[i] = r.NormFloat64()
			}
			return k
		}(), 0.2},
		{"near keys, tau 0.2", near, 0.2},
		{"near keys, tau 1", near, 1},
		{"near keys, tau 0.02", near, 0.02},
		{"two keys swapped, tau 0.2", swapped, 0.2},
	}
	got := map[string]float64{}
	for _, nb := range allBackends(t) {
		for _, c := range cases {
			f32 := func(x []float64) *tensors.Tensor {
				v := make([]float32, len(x))
				for i := range x {
					v[i] = float32(x[i])
				}
				return tensors.FromFlatDataAndDimensions(v, b, d)
			}
			in := []*tensors.Tensor{f32(q), f32(c.k)}
			shp := []shapes.Shape{in[0].Shape(), in[1].Shape()}
			fn := func(s Scope, x []*Node) []*Node { return []*Node{InfoNCE(x[0], x[1], c.tau)} }
			ps, err := Declare(nb.be, dtypes.Float32, false, shp, fn)
			if err != nil {
				t.Fatal(err)
			}
			prog, err := Compile(nb.be, ps, dtypes.Float32, false, shp, fn)
			if err != nil {
				t.Fatal(err)
			}
			out, err := prog.Run(nil, nil, in...)
			prog.Finalize()
			if err != nil {
				t.Fatal(err)
			}
			l := float64(Float32s(out[0])[0])
			Free(out...)
			want := infoNCEHost(q, c.k, b, d, c.tau)
			if math.Abs(l-want) > 1e-5*math.Max(1, want) {
				t.Errorf("%s, %s: InfoNCE %v, host %v", nb.name, c.name, l, want)
			}
			got[c.name] = want
		}
	}
	if got["near keys, tau 0.02"] > 1e-3 {
		t.Errorf("keys next to their queries at tau 0.02: loss %v, want ~0", got["near keys, tau 0.02"])
	}
	if !(got["two keys swapped, tau 0.2"] > got["near keys, tau 0.2"]+0.1) {
		t.Errorf("swapping two samples' keys: loss %v, not above the aligned %v", got["two keys swapped, tau 0.2"], got["near keys, tau 0.2"])
	}
}
