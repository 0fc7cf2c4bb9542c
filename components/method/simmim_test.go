package method

import (
	"math"
	"strings"
	"testing"

	"github.com/gomlx/compute/dtypes"
	. "github.com/gomlx/gomlx/core/graph"
	"github.com/gomlx/gomlx/core/tensors"
	"mimlab/components/targets"
	"mimlab/nn"
	"mimlab/nn/nntest"
)

func simmimModel(t *testing.T) *Model {
	t.Helper()
	m := model(t, "beit", "linear", true) // the same components: no regressor, a linear head, pixels
	m.Method, m.Name = SimMIM{}, "simmim"
	if err := m.Check(); err != nil {
		t.Fatal(err)
	}
	return m
}

// SimMIM's loss is the L1 distance between the head's predictions and the masked patches' values, and only
// the masked patches': recomputed here from the graph's own predictions.
func TestSimMIMLossIsL1OnMaskedPatches(t *testing.T) {
	be := nntest.Go(t)
	m := simmimModel(t)
	in := batch(3, dtypes.Float64)
	ps, params := declare(t, be, m, dtypes.Float64, in)
	out := run(t, be, ps, params, dtypes.Float64, in, func(s nn.Scope, d []*Node) []*Node {
		loss, _ := m.Loss(s, d)
		x := m.Unpack(d)
		patches := nn.Patchify(x.Images, m.ViT.PatchSize)
		z := m.Encoder.Encode(s.Sub("encoder"), m.ViT, nn.ViTInput{Patches: patches, Mask: x.MaskF})
		pred := m.Decoder.(interface {
			DecodeMasked(nn.Scope, *Node, *Node, int, int) *Node
		}).DecodeMasked(s.Sub("decoder"), nn.GatherTokens(z, AddScalar(x.Masked, 1)), nil, m.ViT.Heads, m.Target.Dim())
		return []*Node{loss, pred, m.Target.(targets.Regression).Values(m.TargetInputs(patches, x))}
	})
	loss := tensors.MustCopyFlatData[float64](out[0])[0]
	pred, want := tensors.MustCopyFlatData[float64](out[1]), tensors.MustCopyFlatData[float64](out[2])
	if len(pred) != tB*tM*tPatch*tPatch {
		t.Fatalf("%d predictions, want %d (masked patches only)", len(pred), tB*tM*tPatch*tPatch)
	}
	sum := 0.0
	for i := range pred {
		sum += math.Abs(pred[i] - want[i])
	}
	if l1 := sum / float64(len(pred)); math.Abs(l1-loss) > 1e-12 {
		t.Fatalf("loss %v, L1 over the masked patches %v", loss, l1)
	}
}

// SimMIM refuses what its loss cannot use: token targets, a regressor, a decoder that is more than a head.
func TestSimMIMCheck(t *testing.T) {
	cases := []struct {
		edit func(m *Model)
		want string
	}{
		{func(m *Model) { m.Decoder = buildDecoder(t, "transformer") }, `method.name = "simmim": decoder.name = "transformer"; allowed: linear`},
		{func(m *Model) { m.Target = targets.Standin(tokenFactory{}, 16) }, "needs targets that are values"},
	}
	for _, c := range cases {
		m := simmimModel(t)
		c.edit(m)
		if err := m.Check(); err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("got %v, want %q", err, c.want)
		}
	}
}

type tokenFactory struct{ targets.Factory }

func (tokenFactory) Continuous() bool { return false }

// A short SimMIM run lowers its loss on both backends.
func TestSimMIMTrains(t *testing.T) {
	for _, nb := range nntest.All(t) {
		t.Run(nb.Name, func(t *testing.T) {
			m := simmimModel(t)
			tr, err := nn.NewTrainer(nb.Backend, dtypes.Float32, m.Loss, m.DataShapes(tB), nn.DefaultAdamW(), 1)
			if err != nil {
				t.Fatal(err)
			}
			defer tr.Finalize()
			var first, last float64
			for i := 0; i < 40; i++ {
				l, _, _, err := tr.TrainStep(3e-3, batch(5, dtypes.Float32)...)
				if err != nil {
					t.Fatal(err)
				}
				if i == 0 {
					first = l
				}
				last = l
			}
			if !(last < 0.8*first) {
				t.Fatalf("loss did not fall: %.4f -> %.4f", first, last)
			}
		})
	}
}
