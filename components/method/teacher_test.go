package method

import (
	"math"
	"strings"
	"testing"

	"github.com/gomlx/compute/dtypes"
	"mimlab/components/regressor"
	"mimlab/nn"
	"mimlab/nn/nntest"
)

// teacherModel is an EMA-teacher method at test size (no target: the teacher is the target).
func teacherModel(t *testing.T, name string) *Model {
	t.Helper()
	dec := map[string]string{"ijepa": "mae", "data2vec": "linear"}[name]
	m := model(t, name, dec, false)
	if _, ok := m.Method.(Teacher); !ok {
		t.Fatalf("%s does not declare a teacher", name)
	}
	return m
}

var teacherMethods = []string{"ijepa", "data2vec"}

// Each teacher method trains on both backends: its latent loss falls, its teacher starts as a copy of the
// encoder, follows it by the EMA formula of its momentum schedule (one step checked on the host), and is
// never left at a separate random initialisation (the failure this framework once ran without a word).
func TestTeacherMethodsTrainAndFollowTheirStudent(t *testing.T) {
	for _, name := range teacherMethods {
		for _, nb := range nntest.All(t) {
			t.Run(name+"/"+nb.Name, func(t *testing.T) {
				m := teacherModel(t, name)
				tr, err := nn.NewTrainer(nb.Backend, dtypes.Float32, m.Loss, m.DataShapes(tB), nn.DefaultAdamW(), 1)
				if err != nil {
					t.Fatal(err)
				}
				defer tr.Finalize()
				const steps = 40
				tr.Total = steps
				if len(tr.Set.EMAs) != 1 || tr.Set.EMAs[0].Prefix != "teacher" || tr.Set.EMAs[0].Of != "encoder" {
					t.Fatalf("EMA declarations %+v, want teacher of encoder", tr.Set.EMAs)
				}
				pairs := map[int]int{}
				for i, p := range tr.Set.Params {
					if !p.Trained() {
						j, _ := tr.Set.Index(p.EMAOf)
						pairs[i] = j
						if a, b := nn.Float32s(tr.Params[i]), nn.Float32s(tr.Params[j]); !equal32(a, b) {
							t.Fatalf("%s does not start as a copy of %s", p.Name, p.EMAOf)
						}
					}
				}
				if len(pairs) == 0 {
					t.Fatal("no teacher parameters")
				}
				mom := tr.Set.EMAs[0].Momentum
				var first, last float64
				for i := 0; i < steps; i++ {
					before := map[int][]float32{}
					for te := range pairs {
						before[te] = nn.Float32s(tr.Params[te])
					}
					l, _, met, err := tr.TrainStep(3e-3, batch(uint64(5+i%3), dtypes.Float32)...)
					if err != nil {
						t.Fatal(err)
					}
					if len(met) != len(m.MetricNames()) {
						t.Fatalf("%d metrics, %d names", len(met), len(m.MetricNames()))
					}
					if i == 0 {
						first = l
						mu := mom.At(0, steps)
						for te, st := range pairs {
							a, s := nn.Float32s(tr.Params[te]), nn.Float32s(tr.Params[st])
							for k := range a {
								want := mu*float64(before[te][k]) + (1-mu)*float64(s[k])
								if d := math.Abs(float64(a[k]) - want); d > 1e-6 {
									t.Fatalf("%s[%d] = %v after step 1, want the EMA %v", tr.Set.Params[te].Name, k, a[k], want)
								}
							}
						}
					}
					last = l
				}
				if !(last < first) {
					t.Fatalf("latent loss did not fall: %.5f -> %.5f", first, last)
				}
			})
		}
	}
}

func equal32(a, b []float32) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if math.Float32bits(a[i]) != math.Float32bits(b[i]) {
			return false
		}
	}
	return true
}

// The combinations they cannot use are refused, naming what would do.
func TestTeacherMethodsCheck(t *testing.T) {
	cases := []struct {
		name string
		edit func(m *Model)
		want string
	}{
		{"ijepa", func(m *Model) { m.Decoder = buildDecoder(t, "linear") }, `method.name = "ijepa": decoder.name = "linear"; allowed: mae`},
		{"ijepa", func(m *Model) { m.Regressor = &regressor.Regressor{} }, `regressor.name must be "none"`},
		{"data2vec", func(m *Model) { m.Decoder = buildDecoder(t, "mae") }, `method.name = "data2vec": decoder.name = "mae"; allowed: linear`},
		{"data2vec", func(m *Model) { m.Method = Data2Vec{cfg: Data2VecConfig{TopK: 3}} }, "method.top_k = 3: must be <= encoder.depth = 2"},
	}
	for _, c := range cases {
		m := teacherModel(t, c.name)
		c.edit(m)
		if err := m.Check(); err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("%s: got %v, want %q", c.name, err, c.want)
		}
	}
	for _, bad := range []struct {
		cfg  interface{ Validate() error }
		want string
	}{
		{&IJEPAConfig{MomentumKeys: MomentumKeys{Momentum: 1.2, MomentumEnd: 1, MomentumSchedule: "linear"}}, "method.momentum = 1.2"},
		{&IJEPAConfig{MomentumKeys: MomentumKeys{Momentum: 0.99, MomentumEnd: 1, MomentumSchedule: "step"}}, "method.momentum_schedule = \"step\""},
		{&Data2VecConfig{TopK: -1, MomentumKeys: MomentumKeys{Momentum: 0.99, MomentumEnd: 1, MomentumSchedule: "linear"}}, "method.top_k = -1"},
	} {
		if err := bad.cfg.Validate(); err == nil || !strings.Contains(err.Error(), bad.want) {
			t.Errorf("%+v: got %v, want %q", bad.cfg, err, bad.want)
		}
	}
}
