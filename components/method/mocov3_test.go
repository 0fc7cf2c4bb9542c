package method

import (
	"math"
	"math/rand/v2"
	"strings"
	"testing"

	"github.com/gomlx/compute/dtypes"
	. "github.com/gomlx/gomlx/core/graph"
	"github.com/gomlx/gomlx/core/tensors"
	"mimlab/components/regressor"
	"mimlab/nn"
	"mimlab/nn/nntest"
)

const mocoB = 8 // a contrastive batch: each query has 7 negatives

// mocoModel is MoCo v3 at test size: the shared tiny ViT, MLPs of width 32 -> 16.
func mocoModel(t *testing.T, dec string) *Model {
	t.Helper()
	m := model(t, "mocov3", dec, false)
	cfg := MoCoV3Config{Name: "mocov3", Temperature: 0.2, MLPDim: 32, ProjDim: 16, MomentumKeys: MomentumKeys{Momentum: 0.99, MomentumEnd: 1, MomentumSchedule: "cosine"}}
	if err := cfg.Validate(); err != nil {
		t.Fatal(err)
	}
	m.Method = MoCoV3{cfg: cfg}
	if err := m.Check(); err != nil {
		t.Fatal(err)
	}
	return m
}

// mocoBatch is images and a second view of each (the image shifted by one pixel and lightly noised), a
// stand-in for the loader's two augmented views.
func mocoBatch(seed uint64) []*tensors.Tensor {
	r := rand.New(rand.NewPCG(seed, 1))
	a := make([]float32, mocoB*tImg*tImg)
	for i := range a {
		a[i] = float32(r.Float64())
	}
	b := make([]float32, len(a))
	for i := range b {
		x := i % tImg
		src := i
		if x > 0 {
			src = i - 1
		}
		b[i] = a[src] + float32(0.05*r.NormFloat64())
	}
	return []*tensors.Tensor{tensors.FromFlatDataAndDimensions(a, mocoB, 1, tImg, tImg), tensors.FromFlatDataAndDimensions(b, mocoB, 1, tImg, tImg)}
}

// A method that declares two views gets them: two image inputs of one shape, the second as Inputs.Images2,
// and no masks, targets or labels.
func TestMoCoV3Inputs(t *testing.T) {
	m := mocoModel(t, "linear")
	shp := m.DataShapes(mocoB)
	if len(shp) != 2 || !shp[0].Equal(shp[1]) || shp[0].Dimensions[0] != mocoB {
		t.Fatalf("data shapes %v, want two [%d,1,%d,%d] views", shp, mocoB, tImg, tImg)
	}
	if n := m.Method.Needs(); !n.TwoViews || n.Mask || n.Target || n.Labels {
		t.Fatalf("needs %+v, want two views only", n)
	}
}

// MoCo v3 trains on both backends (the symmetric contrastive loss falls over 40 steps), its momentum encoder
// and momentum projector start as copies of the query encoder and projector and after a step are their EMA
// by the momentum schedule's first value (checked on the host), and the predictor has no momentum copy. Two
// EMA copies in one model is what this relies on of Scope.EMA.
func TestMoCoV3TrainsAndItsKeyEncoderIsTheEMA(t *testing.T) {
	for _, nb := range nntest.All(t) {
		t.Run(nb.Name, func(t *testing.T) {
			m := mocoModel(t, "linear")
			tr, err := nn.NewTrainer(nb.Backend, dtypes.Float32, m.Loss, m.DataShapes(mocoB), nn.DefaultAdamW(), 1)
			if err != nil {
				t.Fatal(err)
			}
			defer tr.Finalize()
			const steps = 40
			tr.Total = steps
			emas := map[string]string{}
			for _, e := range tr.Set.EMAs {
				emas[e.Prefix] = e.Of
			}
			if len(emas) != 2 || emas["teacher"] != "encoder" || emas["teacher_projector"] != "projector" {
				t.Fatalf("EMA declarations %+v, want teacher of encoder and teacher_projector of projector", tr.Set.EMAs)
			}
			pairs := map[int]int{}
			copies := map[string]int{}
			for i, p := range tr.Set.Params {
				if strings.HasPrefix(p.Name, "predictor.") && !p.Trained() {
					t.Fatalf("%s is an EMA copy; the predictor has none", p.Name)
				}
				if p.Trained() {
					continue
				}
				j, _ := tr.Set.Index(p.EMAOf)
				pairs[i] = j
				copies[strings.SplitN(p.Name, ".", 2)[0]]++
				if !equal32(nn.Float32s(tr.Params[i]), nn.Float32s(tr.Params[j])) {
					t.Fatalf("%s does not start as a copy of %s", p.Name, p.EMAOf)
				}
			}
			if copies["teacher"] == 0 || copies["teacher_projector"] == 0 {
				t.Fatalf("momentum copies by prefix %v: want both the encoder's and the projector's", copies)
			}
			mu := tr.Set.EMAs[0].Momentum.At(0, steps)
			var first, last float64
			for i := 0; i < steps; i++ {
				before := map[int][]float32{}
				for te := range pairs {
					before[te] = nn.Float32s(tr.Params[te])
				}
				l, _, met, err := tr.TrainStep(3e-3, mocoBatch(uint64(5+i%3))...)
				if err != nil {
					t.Fatal(err)
				}
				if len(met) != len(m.MetricNames()) {
					t.Fatalf("%d metrics, %d names", len(met), len(m.MetricNames()))
				}
				if i == 0 {
					first = l
					moved := 0.0
					for te, st := range pairs {
						a, s := nn.Float32s(tr.Params[te]), nn.Float32s(tr.Params[st])
						for k := range a {
							want := mu*float64(before[te][k]) + (1-mu)*float64(s[k])
							if d := math.Abs(float64(a[k]) - want); d > 1e-6 {
								t.Fatalf("%s[%d] = %v after step 1, want the EMA %v", tr.Set.Params[te].Name, k, a[k], want)
							}
							moved = math.Max(moved, math.Abs(float64(a[k]-before[te][k])))
						}
					}
					if moved == 0 {
						t.Fatal("no momentum copy moved in step 1: the EMA check above would pass on frozen copies")
					}
				}
				last = l
			}
			t.Logf("contrastive loss %.4f -> %.4f over %d steps", first, last, steps)
			if !(last < 0.5*first) {
				t.Fatalf("contrastive loss did not fall: %.4f -> %.4f", first, last)
			}
		})
	}
}

// The keys carry no gradient: with momentum 1 the momentum encoder and projector stay bit-identical through
// training steps (a gradient, weight decay or AdamW update would move them) although the loss depends on
// them (perturbing one of their entries changes it).
func TestMoCoV3KeysCarryNoGradient(t *testing.T) {
	be := nntest.Go(t)
	m := mocoModel(t, "linear")
	cfg := m.Method.(MoCoV3).cfg
	cfg.Momentum, cfg.MomentumEnd, cfg.MomentumSchedule = 1, 1, "constant"
	m.Method = MoCoV3{cfg: cfg}
	tr, err := nn.NewTrainer(be, dtypes.Float32, m.Loss, m.DataShapes(mocoB), nn.DefaultAdamW(), 1)
	if err != nil {
		t.Fatal(err)
	}
	defer tr.Finalize()
	tr.Total = 3
	start := map[int][]float32{}
	for i, p := range tr.Set.Params {
		if !p.Trained() {
			start[i] = nn.Float32s(tr.Params[i])
		}
	}
	in := mocoBatch(2)
	var losses []float64
	for step := 0; step < 3; step++ {
		l, _, _, err := tr.TrainStep(1e-2, in...)
		if err != nil {
			t.Fatal(err)
		}
		losses = append(losses, l)
	}
	for i, v := range start {
		if !equal32(v, nn.Float32s(tr.Params[i])) {
			t.Fatalf("%s moved with momentum 1: a gradient or optimiser update reached it", tr.Set.Params[i].Name)
		}
	}
	if losses[0] == losses[2] {
		t.Fatal("the loss did not change over 3 steps: the student did not train, so the check above proves nothing")
	}
	// The loss depends on the copies: the queries' InfoNCE against the momentum branch's keys changes when
	// the momentum projector's first layer is negated.
	mc := m.Method.(MoCoV3)
	prog, err := nn.Compile(be, tr.Set, dtypes.Float32, false, m.DataShapes(mocoB), func(s nn.Scope, in []*Node) []*Node {
		enc := func(sc nn.Scope, x *Node) *Node {
			return clsToken(m.Encoder.Encode(sc, m.ViT, nn.ViTInput{Patches: nn.Patchify(x, m.ViT.PatchSize)}))
		}
		q := mc.mlp(s.Sub("predictor"), mc.mlp(s.Sub("projector"), enc(s.Sub("encoder"), in[0]), 3), 2)
		k := mc.mlp(s.Sub("teacher_projector"), enc(s.Sub("teacher"), in[1]), 3)
		return []*Node{nn.InfoNCE(q, k, cfg.Temperature)}
	})
	if err != nil {
		t.Fatal(err)
	}
	defer prog.Finalize()
	eval := func(params []*tensors.Tensor) float64 {
		out, err := prog.Run(params, nil, in...)
		if err != nil {
			t.Fatal(err)
		}
		defer nn.Free(out...)
		return nn.Float64s(out[0])[0]
	}
	i, ok := tr.Set.Index("teacher_projector.fc0.weight")
	if !ok {
		t.Fatalf("no teacher_projector.fc0.weight among %v", tr.Set.Names())
	}
	l0 := eval(tr.Params)
	params := append([]*tensors.Tensor(nil), tr.Params...)
	w := nn.Float32s(params[i])
	for k := range w {
		w[k] *= -1
	}
	params[i] = nn.TensorOf(dtypes.Float32, w, tr.Set.Params[i].Dims...)
	defer nn.Free(params[i])
	if l1 := eval(params); l1 == l0 {
		t.Fatalf("the loss does not depend on the momentum projector (%v both): the check above would prove nothing", l0)
	}
}

// MoCo v3 refuses a regressor, accepts whatever [decoder] names (it builds none), and its keys' errors name
// the key and what is allowed.
func TestMoCoV3Check(t *testing.T) {
	for _, dec := range []string{"linear", "transformer", "mae"} {
		m := mocoModel(t, dec)
		if err := m.Check(); err != nil {
			t.Errorf("decoder %s: %v (MoCo v3 ignores its decoder)", dec, err)
		}
	}
	m := mocoModel(t, "linear")
	m.Regressor = &regressor.Regressor{}
	if err := m.Check(); err == nil || !strings.Contains(err.Error(), `method.name = "mocov3": regressor.name must be "none"`) {
		t.Errorf("regressor: got %v", err)
	}
	good := MoCoV3Config{Temperature: 0.2, MLPDim: 32, ProjDim: 16, MomentumKeys: MomentumKeys{Momentum: 0.99, MomentumEnd: 1, MomentumSchedule: "cosine"}}
	cases := []struct {
		edit func(c *MoCoV3Config)
		want string
	}{
		{func(c *MoCoV3Config) { c.Temperature = 0 }, "method.temperature = 0: must be in (0, 10]"},
		{func(c *MoCoV3Config) { c.Temperature = math.NaN() }, "method.temperature = NaN"},
		{func(c *MoCoV3Config) { c.MLPDim = 0 }, "method.mlp_dim = 0: must be in 1..65536"},
		{func(c *MoCoV3Config) { c.ProjDim = -1 }, "method.proj_dim = -1"},
		{func(c *MoCoV3Config) { c.Momentum = 1.5 }, "method.momentum = 1.5: must be in [0, 1]"},
		{func(c *MoCoV3Config) { c.MomentumSchedule = "step" }, `method.momentum_schedule = "step": allowed values are constant, linear, cosine`},
	}
	for _, c := range cases {
		cfg := good
		c.edit(&cfg)
		if err := cfg.Validate(); err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("got %v, want %q", err, c.want)
		}
	}
	if err := good.Validate(); err != nil {
		t.Errorf("the test's own config: %v", err)
	}
}
