package nn

import (
	"math"
	"strings"
	"testing"

	"github.com/gomlx/compute/dtypes"
	"github.com/gomlx/compute/shapes"
	. "github.com/gomlx/gomlx/core/graph"
	"github.com/gomlx/gomlx/core/tensors"
)

// emaLoss is a teacher-student loss in the shape of data2vec / I-JEPA: the student encodes the visible
// patches, the teacher (the EMA of the student) encodes them too, and the student regresses the teacher.
// A second term keeps the student moving so the teacher has something to follow.
func emaLoss(c ViTConfig, momentum Sched) LossFn {
	return func(s Scope, data []*Node) (*Node, []*Node) {
		in := ViTInput{Patches: Patchify(data[0], c.PatchSize), Keep: data[1]}
		z := ViT(s.Sub("encoder"), c, in)
		teacher := ViT(s.EMA("teacher", "encoder", momentum), c, in)
		l := Add(MSE(z, teacher), MSE(z, OnesLike(z)))
		return l, []*Node{MSE(teacher, ZerosLike(teacher))}
	}
}

func emaPairs(t *testing.T, ps *ParamSet) [][2]int {
	t.Helper()
	var out [][2]int
	for i, p := range ps.Params {
		if p.Trained() {
			continue
		}
		j, ok := ps.Index(p.EMAOf)
		if !ok || !strings.HasPrefix(p.Name, "teacher.") || p.EMAOf != "encoder."+strings.TrimPrefix(p.Name, "teacher.") {
			t.Fatalf("%s: EMA of %q", p.Name, p.EMAOf)
		}
		out = append(out, [2]int{i, j})
	}
	if len(out) == 0 || len(out)*2 != len(ps.Params) {
		t.Fatalf("%d EMA parameters of %d", len(out), len(ps.Params))
	}
	return out
}

// The teacher starts as a copy of the student and after every step is m x itself + (1 - m) x the updated
// student, m following its schedule (here linear 0.8 -> 0.98 over 30 steps, so every step's m differs):
// checked against the formula on the host to 1e-6, on both backends.
func TestEMAFollowsItsSourceWithItsSchedule(t *testing.T) {
	c := tinyViT()
	sched := Sched{From: 0.8, To: 0.98, Shape: "linear"}
	const steps = 30
	for _, nb := range allBackends(t) {
		t.Run(nb.name, func(t *testing.T) {
			x, keep := randImages(1, 4, 1, 12), keepIdx(4, 5)
			tr, err := NewTrainer(nb.be, dtypes.Float32, emaLoss(c, sched), []shapes.Shape{x.Shape(), keep.Shape()}, DefaultAdamW(), 7)
			if err != nil {
				t.Fatal(err)
			}
			defer tr.Finalize()
			tr.Total = steps
			pairs := emaPairs(t, tr.Set)
			prev := make([][]float32, len(tr.Params))
			for _, p := range pairs {
				te, st := Float32s(tr.Params[p[0]]), Float32s(tr.Params[p[1]])
				for k := range te {
					if te[k] != st[k] {
						t.Fatalf("%s does not start as a copy of %s", tr.Set.Params[p[0]].Name, tr.Set.Params[p[1]].Name)
					}
				}
				prev[p[0]] = te
			}
			moved := 0.0
			for step := 0; step < steps; step++ {
				m := sched.At(step, steps)
				if _, _, _, err := tr.TrainStep(1e-2, x, keep); err != nil {
					t.Fatal(err)
				}
				for _, p := range pairs {
					te, st := Float32s(tr.Params[p[0]]), Float32s(tr.Params[p[1]])
					for k := range te {
						want := m*float64(prev[p[0]][k]) + (1-m)*float64(st[k])
						if d := math.Abs(float64(te[k]) - want); d > 1e-6 {
							t.Fatalf("step %d: %s[%d] = %v, want %v (m = %v): off by %g", step+1, tr.Set.Params[p[0]].Name, k, te[k], want, m, d)
						}
						moved = math.Max(moved, math.Abs(float64(te[k]-prev[p[0]][k])))
					}
					prev[p[0]] = te
				}
				for _, p := range pairs { // no optimiser state for the copies
					for _, ts := range []*tensors.Tensor{tr.M[p[0]], tr.V[p[0]]} {
						for _, v := range Float32s(ts) {
							if v != 0 {
								t.Fatalf("%s has optimiser state %v", tr.Set.Params[p[0]].Name, v)
							}
						}
					}
				}
			}
			if moved == 0 {
				t.Fatal("the teacher never moved: the test would pass on a frozen teacher")
			}
		})
	}
}

// Gradients never reach the teacher, although the loss depends on it: with momentum 1 the teacher must stay
// bit-identical through training (an AdamW or weight-decay update would move it), while perturbing one of its
// entries changes the loss (so the StopGradient is what keeps it, not a loss that ignores it).
func TestEMAGetsNoGradient(t *testing.T) {
	c := tinyViT()
	for _, nb := range allBackends(t) {
		t.Run(nb.name, func(t *testing.T) {
			x, keep := randImages(2, 4, 1, 12), keepIdx(4, 5)
			shp := []shapes.Shape{x.Shape(), keep.Shape()}
			loss := emaLoss(c, Constant(1))
			tr, err := NewTrainer(nb.be, dtypes.Float32, loss, shp, DefaultAdamW(), 3)
			if err != nil {
				t.Fatal(err)
			}
			defer tr.Finalize()
			tr.Total = 5
			pairs := emaPairs(t, tr.Set)
			before := map[int][]float32{}
			for _, p := range pairs {
				before[p[0]] = Float32s(tr.Params[p[0]])
			}
			for i := 0; i < 5; i++ {
				if _, _, _, err := tr.TrainStep(1e-2, x, keep); err != nil {
					t.Fatal(err)
				}
			}
			studentMoved := false
			for _, p := range pairs {
				for k, v := range Float32s(tr.Params[p[0]]) {
					if math.Float32bits(v) != math.Float32bits(before[p[0]][k]) {
						t.Fatalf("%s[%d] moved from %v to %v with momentum 1: a gradient reached it", tr.Set.Params[p[0]].Name, k, before[p[0]][k], v)
					}
				}
				st := Float32s(tr.Params[p[1]])
				for k := range st {
					studentMoved = studentMoved || st[k] != before[p[0]][k]
				}
			}
			if !studentMoved {
				t.Fatal("the student did not train")
			}
			// The loss does depend on the teacher: perturb its final norm's bias and the loss changes.
			prog, err := Compile(nb.be, tr.Set, dtypes.Float32, false, shp, func(s Scope, in []*Node) []*Node {
				in2 := ViTInput{Patches: Patchify(in[0], c.PatchSize), Keep: in[1]}
				z := ViT(s.Sub("encoder"), c, in2)
				return []*Node{MSE(z, ViT(s.Sub("teacher"), c, in2))}
			})
			if err != nil {
				t.Fatal(err)
			}
			defer prog.Finalize()
			eval := func(params []*tensors.Tensor) float64 {
				out, err := prog.Run(params, nil, x, keep)
				if err != nil {
					t.Fatal(err)
				}
				defer Free(out...)
				return Float64s(out[0])[0]
			}
			i, _ := tr.Set.Index("teacher.norm.bias")
			l0 := eval(tr.Params)
			params := append([]*tensors.Tensor(nil), tr.Params...)
			v := Float32s(params[i])
			v[0] += 0.5
			params[i] = TensorOf(dtypes.Float32, v, tr.Set.Params[i].Dims...)
			defer Free(params[i])
			if l1 := eval(params); l1 == l0 {
				t.Fatalf("the loss does not depend on the teacher (%v both): the no-gradient check would prove nothing", l0)
			}
		})
	}
}

// A run stopped after 6 of 12 steps and resumed from its parameters, moments and step (what a checkpoint
// holds) gives a teacher bit-identical to the uninterrupted run's.
func TestEMAResumeIsBitIdentical(t *testing.T) {
	c := tinyViT()
	sched := Sched{From: 0.9, To: 1, Shape: "cosine"}
	for _, nb := range allBackends(t) {
		t.Run(nb.name, func(t *testing.T) {
			x, keep := randImages(3, 4, 1, 12), keepIdx(4, 5)
			shp := []shapes.Shape{x.Shape(), keep.Shape()}
			newTrainer := func() *Trainer {
				tr, err := NewTrainer(nb.be, dtypes.Float32, emaLoss(c, sched), shp, DefaultAdamW(), 11)
				if err != nil {
					t.Fatal(err)
				}
				tr.Total = 12
				return tr
			}
			run := func(tr *Trainer, n int) {
				for i := 0; i < n; i++ {
					if _, _, _, err := tr.TrainStep(1e-2, x, keep); err != nil {
						t.Fatal(err)
					}
				}
			}
			whole := newTrainer()
			defer whole.Finalize()
			run(whole, 12)
			first := newTrainer()
			run(first, 6)
			copyOut := func(ts []*tensors.Tensor) [][]float32 {
				out := make([][]float32, len(ts))
				for i, x := range ts {
					out[i] = Float32s(x)
				}
				return out
			}
			p, m, v, step := copyOut(first.Params), copyOut(first.M), copyOut(first.V), first.Step
			first.Finalize()
			second := newTrainer()
			defer second.Finalize()
			for i, spec := range second.Set.Params {
				Free(second.Params[i], second.M[i], second.V[i])
				second.Params[i] = TensorOf(dtypes.Float32, p[i], spec.Dims...)
				second.M[i] = TensorOf(dtypes.Float32, m[i], spec.Dims...)
				second.V[i] = TensorOf(dtypes.Float32, v[i], spec.Dims...)
			}
			second.Step = step
			run(second, 6)
			for _, pr := range emaPairs(t, whole.Set) {
				a, b := Float32s(whole.Params[pr[0]]), Float32s(second.Params[pr[0]])
				for k := range a {
					if math.Float32bits(a[k]) != math.Float32bits(b[k]) {
						t.Fatalf("%s[%d]: %v uninterrupted, %v resumed", whole.Set.Params[pr[0]].Name, k, a[k], b[k])
					}
				}
			}
		})
	}
}

// Wrong use is loud: a copy whose module differs from its source, a trainer without its run length.
func TestEMAMisuseIsAnError(t *testing.T) {
	c := tinyViT()
	be := goBackend(t)
	x, keep := randImages(1, 4, 1, 12), keepIdx(4, 5)
	shp := []shapes.Shape{x.Shape(), keep.Shape()}
	cases := []struct {
		name string
		loss LossFn
		want string
	}{
		{"copy of a module the source lacks", func(s Scope, d []*Node) (*Node, []*Node) {
			in := ViTInput{Patches: Patchify(d[0], c.PatchSize), Keep: d[1]}
			z := ViT(s.Sub("encoder"), c, in)
			t := ViT(s.EMA("teacher", "student", Constant(0.99)), c, in)
			return MSE(z, t), nil
		}, "teacher.patch_embed.proj.weight is declared as the EMA of student.patch_embed.proj.weight, which the model does not have"},
		{"copy of another shape", func(s Scope, d []*Node) (*Node, []*Node) {
			in := ViTInput{Patches: Patchify(d[0], c.PatchSize), Keep: d[1]}
			z := ViT(s.Sub("encoder"), c, in)
			wide := c
			wide.Dim = 32
			t := ViT(s.EMA("teacher", "encoder", Constant(0.99)), wide, in)
			return Add(MSE(z, ZerosLike(z)), MSE(t, ZerosLike(t))), nil
		}, "shapes differ"},
	}
	cases = append(cases, struct {
		name string
		loss LossFn
		want string
	}{"an unknown schedule shape", emaLoss(c, Sched{From: 0.9, To: 1, Shape: "cubic"}), `_schedule = "cubic": allowed values are constant, linear, cosine`},
		struct {
			name string
			loss LossFn
			want string
		}{"a momentum above 1", emaLoss(c, Constant(1.5)), "must be in [0, 1]"})
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			_, err := NewTrainer(be, dtypes.Float32, tc.loss, shp, DefaultAdamW(), 1)
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("error %v, want one saying %q", err, tc.want)
			}
		})
	}
	t.Run("no total steps", func(t *testing.T) {
		tr, err := NewTrainer(be, dtypes.Float32, emaLoss(c, Constant(0.99)), shp, DefaultAdamW(), 1)
		if err != nil {
			t.Fatal(err)
		}
		defer tr.Finalize()
		if _, _, _, err := tr.TrainStep(1e-3, x, keep); err == nil || !strings.Contains(err.Error(), "Trainer.Total") {
			t.Fatalf("error %v, want one naming Trainer.Total", err)
		}
	})
}

func TestSchedAt(t *testing.T) {
	cases := []struct {
		s           Sched
		step, total int
		want        float64
	}{
		{Constant(0.5), 7, 10, 0.5},
		{Sched{0.996, 1, "linear"}, 0, 100, 0.996},
		{Sched{0.996, 1, "linear"}, 50, 100, 0.998},
		{Sched{0.996, 1, "cosine"}, 50, 100, 0.998},
		{Sched{0, 1, "cosine"}, 25, 100, (1 - math.Cos(math.Pi/4)) / 2},
		{Sched{0, 1, "linear"}, 200, 100, 1},
	}
	for _, c := range cases {
		if got := c.s.At(c.step, c.total); math.Abs(got-c.want) > 1e-12 {
			t.Errorf("%v.At(%d, %d) = %v, want %v", c.s, c.step, c.total, got, c.want)
		}
	}
	for _, bad := range []Sched{{0.9, 1, "cubic"}, {1.5, 1, "linear"}, {0.9, 2, "cosine"}, {math.NaN(), 1, "constant"}} {
		if err := bad.Validate("method.momentum", 0, 1); err == nil {
			t.Errorf("%v validated", bad)
		}
	}
}

// One model may hold several EMA copies (MoCo v3's momentum encoder and momentum projector): each follows
// its own source with its own schedule, here a constant 0.5 for the head's copy and linear 0.8 -> 0.98 for
// the encoder's, so a copy updated with the other's momentum fails the check.
func TestTwoEMACopiesFollowTheirOwnSources(t *testing.T) {
	c := tinyViT()
	encSched, headSched := Sched{From: 0.8, To: 0.98, Shape: "linear"}, Constant(0.5)
	loss := func(s Scope, data []*Node) (*Node, []*Node) {
		in := ViTInput{Patches: Patchify(data[0], c.PatchSize), Keep: data[1]}
		z := Linear(s.Sub("head"), ViT(s.Sub("encoder"), c, in), 8, true)
		k := Linear(s.EMA("head_copy", "head", headSched), ViT(s.EMA("teacher", "encoder", encSched), c, in), 8, true)
		return Add(MSE(z, k), MSE(z, OnesLike(z))), nil
	}
	const steps = 4
	x, keep := randImages(1, 4, 1, 12), keepIdx(4, 5)
	tr, err := NewTrainer(goBackend(t), dtypes.Float32, loss, []shapes.Shape{x.Shape(), keep.Shape()}, DefaultAdamW(), 7)
	if err != nil {
		t.Fatal(err)
	}
	defer tr.Finalize()
	tr.Total = steps
	if len(tr.Set.EMAs) != 2 {
		t.Fatalf("EMA declarations %+v, want two", tr.Set.EMAs)
	}
	seen := map[string]bool{}
	for step := 0; step < steps; step++ {
		prev := make([][]float32, len(tr.Params))
		for i, p := range tr.Set.Params {
			if !p.Trained() {
				prev[i] = Float32s(tr.Params[i])
			}
		}
		if _, _, _, err := tr.TrainStep(1e-2, x, keep); err != nil {
			t.Fatal(err)
		}
		for i, p := range tr.Set.Params {
			if p.Trained() {
				continue
			}
			prefix, _, _ := strings.Cut(p.Name, ".")
			m := map[string]Sched{"teacher": encSched, "head_copy": headSched}[prefix].At(step, steps)
			if want := map[string]string{"teacher": "encoder.", "head_copy": "head."}[prefix]; !strings.HasPrefix(p.EMAOf, want) {
				t.Fatalf("%s is the EMA of %s, want a parameter under %s", p.Name, p.EMAOf, want)
			}
			seen[prefix] = true
			j, _ := tr.Set.Index(p.EMAOf)
			te, st := Float32s(tr.Params[i]), Float32s(tr.Params[j])
			for k := range te {
				want := m*float64(prev[i][k]) + (1-m)*float64(st[k])
				if d := math.Abs(float64(te[k]) - want); d > 1e-6 {
					t.Fatalf("step %d: %s[%d] = %v, want %v (m = %v)", step+1, p.Name, k, te[k], want, m)
				}
			}
		}
	}
	if !seen["teacher"] || !seen["head_copy"] {
		t.Fatalf("copies checked: %v, want both", seen)
	}
}

// An EMA copy runs deterministically: a teacher built with drop path declares no random inputs (the student
// does), so its targets are those of the whole network.
func TestEMACopiesRunWithoutDropPath(t *testing.T) {
	c := tinyViT() // drop path 0.1
	x, keep := randImages(1, 4, 1, 12), keepIdx(4, 5)
	ps, err := Declare(goBackend(t), dtypes.Float32, true, []shapes.Shape{x.Shape(), keep.Shape()}, func(s Scope, d []*Node) []*Node {
		l, _ := emaLoss(c, Constant(0.9))(s, d)
		return []*Node{l}
	})
	if err != nil {
		t.Fatal(err)
	}
	student := 0
	for _, r := range ps.Rands {
		if strings.Contains(r.Name, "teacher.") {
			t.Errorf("the teacher draws %s", r.Name)
		}
		if strings.HasPrefix(r.Name, "encoder.") {
			student++
		}
	}
	if student == 0 {
		t.Fatal("the student draws no drop path either: the test proves nothing")
	}
}

// Two EMA copies whose names nest (t and t.b) would share parameters: refused when the model is declared.
func TestNestedEMANamesAreRefused(t *testing.T) {
	be := goBackend(t)
	x, keep := randImages(1, 4, 1, 12), keepIdx(4, 5)
	c := tinyViT()
	_, err := NewTrainer(be, dtypes.Float32, func(s Scope, d []*Node) (*Node, []*Node) {
		in := ViTInput{Patches: Patchify(d[0], c.PatchSize), Keep: d[1]}
		z := ViT(s.Sub("encoder"), c, in)
		a := ViT(s.EMA("t.b", "encoder", Constant(0.9)), c, in)
		b := ViT(s.EMA("t", "encoder", Constant(0.5)), c, in)
		return Add(MSE(z, a), MSE(z, b)), nil
	}, []shapes.Shape{x.Shape(), keep.Shape()}, DefaultAdamW(), 1)
	if err == nil || !strings.Contains(err.Error(), "nest") {
		t.Fatalf("error %v, want one saying the EMA copies nest", err)
	}
}
