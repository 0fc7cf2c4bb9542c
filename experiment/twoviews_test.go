package experiment

import (
	"io"
	"slices"
	"strings"
	"testing"

	"mimlab/data"
	"mimlab/framework/spec"
	"mimlab/framework/sweep"
	"mimlab/nn"
)

// prepareFirst prepares the first trial of a shipped spec at a tiny size.
func prepareFirst(t *testing.T, path string, sets ...string) *Trial {
	t.Helper()
	be, name, err := nn.NewBackend("go", io.Discard)
	if err != nil {
		t.Fatal(err)
	}
	raw, err := spec.Load(path, append([]string{"encoder.dim=16", "encoder.depth=1", "encoder.heads=2", "data.train_limit=100", "data.test_limit=50", "data.batch_size=8"}, sets...))
	if err != nil {
		t.Fatal(err)
	}
	trials, err := sweep.Expand(raw, Sections())
	if err != nil {
		t.Fatal(err)
	}
	env := NewEnv(be, name, t.TempDir(), io.Discard)
	env.AddSpec(trials[0].Hash, trials[0].Resolved)
	x, err := env.Prepare(trials[0].Hash)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(x.Close)
	return x
}

// A method that declares two views gets them in its training steps: the training loader makes them, the
// step's last data input is the batch's second view (not its first), in the shape the model declared; a
// method that declares one view gets a loader without a second (its batches, and so its numbers, as before);
// a batch without the second view is an error, not a silent copy of the first.
func TestTwoViewMethodGetsTwoViews(t *testing.T) {
	x := prepareFirst(t, "../experiments/mocov3.toml")
	lc := x.trainLoaderConfig()
	if !lc.TwoViews || len(lc.Augment) == 0 {
		t.Fatalf("mocov3's training loader %+v: want two augmented views", lc)
	}
	l := data.NewLoader(x.Data, &x.Data.Train, lc, 0)
	b := l.Next()
	l.Close()
	in, err := x.StepInputs(b)
	if err != nil {
		t.Fatal(err)
	}
	defer nn.Free(in...)
	shp := x.Model.DataShapes(x.Cfg.Data.BatchSize)
	if len(in) != len(shp) || len(in) != 2 {
		t.Fatalf("%d step inputs, %d declared shapes, want 2", len(in), len(shp))
	}
	for i := range in {
		if !in[i].Shape().Equal(shp[i]) {
			t.Fatalf("input %d has shape %v, declared %v", i, in[i].Shape(), shp[i])
		}
	}
	if got := nn.Float32s(in[1]); !slices.Equal(got, b.Images2) || slices.Equal(got, b.Images) {
		t.Fatal("the step's second image input is not the batch's second view")
	}
	b.Images2 = nil
	if _, err := x.StepInputs(b); err == nil || !strings.Contains(err.Error(), "needs two views") {
		t.Fatalf("a batch without a second view: %v", err)
	}

	q := prepareFirst(t, "../experiments/quickstart.toml")
	if q.trainLoaderConfig().TwoViews {
		t.Fatalf("%s asks for one view, its loader makes two", q.Cfg.Impl("method"))
	}
}
