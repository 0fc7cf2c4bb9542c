package experiment

import (
	"bytes"
	"io"
	"slices"
	"strconv"
	"strings"
	"testing"

	"mimlab/framework/spec"
	"mimlab/framework/sweep"
	"mimlab/nn"

	"github.com/gomlx/compute/dtypes"
)

// TestExtractRunsEvalBatches: feature extraction reads the split in batches of eval.batch, the size its
// graph is compiled for, whatever data.batch_size (the training batch) is. It read batches of
// data.batch_size padded to eval.batch, which ran the graph 4x as often as needed at the quickstart's sizes.
func TestExtractRunsEvalBatches(t *testing.T) {
	be, resolved, err := nn.NewBackendWith("ort", nn.BackendOptions{Threads: 1}, io.Discard)
	if err != nil {
		t.Fatal(err)
	}
	for _, c := range []struct {
		train, eval, n, wantBatches, wantSize int
	}{
		{train: 16, eval: 64, n: 200, wantBatches: 4},
		{train: 64, eval: 32, n: 200, wantBatches: 7},
		{train: 16, eval: 256, n: 200, wantBatches: 1, wantSize: 200}, // a small split is not padded up to eval.batch
	} {
		sets := []string{"encoder.dim=16", "encoder.depth=1", "encoder.heads=2", "data.train_limit=200", "data.test_limit=100",
			"data.batch_size=" + strconv.Itoa(c.train), "eval.batch=" + strconv.Itoa(c.eval)}
		raw, err := spec.Load("../experiments/quickstart.toml", sets)
		if err != nil {
			t.Fatal(err)
		}
		trials, err := sweep.Expand(raw, Sections())
		if err != nil {
			t.Fatal(err)
		}
		var log bytes.Buffer
		env := NewEnv(be, resolved, t.TempDir(), &log)
		env.AddSpec(trials[0].Hash, trials[0].Resolved)
		x, err := env.Prepare(trials[0].Hash)
		if err != nil {
			t.Fatal(err)
		}
		trn, err := x.NewTrainer()
		if err != nil {
			t.Fatal(err)
		}
		f, _, err := x.Extract(trn.Set, trn.Params, &x.Data.Train, false)
		trn.Finalize()
		if err != nil {
			t.Fatal(err)
		}
		if f.Cls.N != c.n || len(f.Cls.X) != c.n*16 {
			t.Errorf("batch %d/%d: %d features of %d values, want %d of 16", c.train, c.eval, f.Cls.N, len(f.Cls.X), c.n)
		}
		size := c.eval
		if c.wantSize > 0 {
			size = c.wantSize
		}
		want := "features: 200 images in " + strconv.Itoa(c.wantBatches) + " batches of " + strconv.Itoa(size)
		if !strings.Contains(log.String(), want) {
			t.Errorf("data.batch_size %d, eval.batch %d: log %q, want %q", c.train, c.eval, log.String(), want)
		}
	}
}

// The random-init reference encoder is the same whichever method's trial computes it: the encoder's
// parameters of a CAE trial and of a BEiT trial get the same values (with one stream through each set in
// order they did not, and the quickstart's reference row changed with the order its trials finished in).
func TestRandomInitReferenceIsTheSameForEveryMethod(t *testing.T) {
	raw, err := spec.Load("../experiments/quickstart.toml", []string{"encoder.dim=16", "encoder.depth=1", "encoder.heads=2",
		"data.train_limit=100", "data.test_limit=50"})
	if err != nil {
		t.Fatal(err)
	}
	trials, err := sweep.Expand(raw, Sections())
	if err != nil {
		t.Fatal(err)
	}
	be, resolved, err := nn.NewBackend("go", io.Discard)
	if err != nil {
		t.Fatal(err)
	}
	env := NewEnv(be, resolved, t.TempDir(), io.Discard)
	values := map[string]map[string][]float32{} // method -> param -> values
	for _, tr := range trials {
		env.AddSpec(tr.Hash, tr.Resolved)
		x, err := env.Prepare(tr.Hash)
		if err != nil {
			t.Fatal(err)
		}
		trn, err := x.NewTrainer()
		if err != nil {
			t.Fatal(err)
		}
		set := trn.Set
		m := map[string][]float32{}
		for i, v := range set.InitParamsByName(dtypes.Float32, 0) {
			m[set.Params[i].Name] = nn.Float32s(v)
		}
		values[Impl(tr.Resolved, "method")] = m
	}
	cae, beit := values["cae"], values["beit"]
	shared := 0
	for name, v := range cae {
		if !strings.HasPrefix(name, "encoder") {
			continue
		}
		w, ok := beit[name]
		if !ok {
			t.Errorf("encoder parameter %s: in the CAE set, not in BEiT's", name)
			continue
		}
		shared++
		if !slices.Equal(v, w) {
			t.Errorf("encoder parameter %s: CAE and BEiT sets draw different values", name)
		}
	}
	if shared < 5 {
		t.Fatalf("only %d encoder parameters compared (names: %v)", shared, keys(cae))
	}
}

func keys(m map[string][]float32) []string {
	var out []string
	for k := range m {
		out = append(out, k)
	}
	return out
}
