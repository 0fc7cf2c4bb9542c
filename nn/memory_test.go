package nn

import (
	"os"
	"runtime"
	"strconv"
	"strings"
	"testing"

	"github.com/gomlx/compute/dtypes"
	"github.com/gomlx/compute/shapes"
	. "github.com/gomlx/gomlx/core/graph"
	"github.com/gomlx/gomlx/core/tensors"
)

// A training step frees what it replaces (the previous parameters and moments, its random inputs and
// scalars) and leaves the caller's data tensors alone; Finalize frees the rest.
func TestTrainerFreesWhatItReplaces(t *testing.T) {
	c := tinyViT()
	for _, nb := range allBackends(t) {
		t.Run(nb.name, func(t *testing.T) {
			x, keep := randImages(1, 4, 1, 12), keepIdx(4, 5)
			tr, err := NewTrainer(nb.be, dtypes.Float32, encoderLoss(c), []shapes.Shape{x.Shape(), keep.Shape()}, DefaultAdamW(), 1)
			if err != nil {
				t.Fatal(err)
			}
			for step := 0; step < 2; step++ {
				old := append(append(append([]*tensors.Tensor(nil), tr.Params...), tr.M...), tr.V...)
				if _, _, _, err := tr.TrainStep(1e-3, x, keep); err != nil {
					t.Fatal(err)
				}
				for i, o := range old {
					if o.Ok() {
						t.Fatalf("step %d: replaced tensor %d was not freed", step+1, i)
					}
				}
				if !x.Ok() || !keep.Ok() {
					t.Fatal("TrainStep freed the caller's data")
				}
			}
			held := append(append(append([]*tensors.Tensor(nil), tr.Params...), tr.M...), tr.V...)
			tr.Finalize()
			for i, h := range held {
				if h.Ok() {
					t.Fatalf("Finalize left tensor %d alive", i)
				}
			}
		})
	}
}

func rssBytes(t *testing.T) int64 {
	b, err := os.ReadFile("/proc/self/status")
	if err != nil {
		t.Skip("no /proc/self/status")
	}
	for _, l := range strings.Split(string(b), "\n") {
		if f := strings.Fields(l); len(f) >= 2 && f[0] == "VmRSS:" {
			kb, _ := strconv.ParseInt(f[1], 10, 64)
			return kb << 10
		}
	}
	t.Skip("no VmRSS")
	return 0
}

// On ONNX Runtime, outputs and inputs freed with Free do not accumulate: 300 runs with a 3.3 MB output and
// a 0.8 MB input grow the process by far less than the 1.2 GB they would leak unfreed (how a sweep was
// OOM-killed before Free existed).
func TestFreedRunsDoNotAccumulate(t *testing.T) {
	be := ortBackend(t, "the leak this guards against is ort's")
	shp := []shapes.Shape{shapes.Make(dtypes.Float32, 64, 50, 64)}
	fn := func(s Scope, in []*Node) []*Node { return []*Node{Linear(s.Sub("a"), in[0], 256, true)} }
	ps, err := Declare(be, dtypes.Float32, false, shp, fn)
	if err != nil {
		t.Fatal(err)
	}
	params := ps.InitParams(dtypes.Float32, 1)
	defer Free(params...)
	p, err := Compile(be, ps, dtypes.Float32, false, shp, fn)
	if err != nil {
		t.Fatal(err)
	}
	defer p.Finalize()
	x := make([]float32, 64*50*64)
	run := func(n int) {
		for i := 0; i < n; i++ {
			in := tensors.FromFlatDataAndDimensions(x, 64, 50, 64)
			out, err := p.Run(params, nil, in)
			if err != nil {
				t.Fatal(err)
			}
			_ = Float32s(out[0])
			Free(in)
			Free(out...)
		}
	}
	run(20) // warm up the allocator
	before := rssBytes(t)
	run(300)
	if grew := rssBytes(t) - before; grew > 256<<20 {
		t.Fatalf("300 freed runs grew the process by %d MB", grew>>20)
	}
}

// The parameters and moments a trainer starts from live in Go (initialised there, or loaded from a
// checkpoint). Its first step moves them to the engine and hands their Go copies back: without that they
// stayed in Go's heap as uncollected garbage through the whole run (166 MB of the 384-wide CAE's peak RSS).
// On the Go backend the engine's buffers are Go's heap, so only ONNX Runtime is checked.
func TestFirstStepDropsTheGoCopies(t *testing.T) {
	be := ortBackend(t, "on the Go backend the engine's buffers are in Go's heap")
	shp := []shapes.Shape{shapes.Make(dtypes.Float32, 8, 512)}
	loss := func(s Scope, in []*Node) (*Node, []*Node) {
		h := Linear(s.Sub("a"), in[0], 1024, true)
		return ReduceAllMean(Square(Linear(s.Sub("b"), h, 512, true))), nil
	}
	tr, err := NewTrainer(be, dtypes.Float32, loss, shp, DefaultAdamW(), 1)
	if err != nil {
		t.Fatal(err)
	}
	defer tr.Finalize()
	model := int64(tr.Set.NumValues()) * 4 // bytes of one copy of the parameters
	v := make([]float32, 8*512)
	for i := range v {
		v[i] = float32(i%7) / 7
	}
	x := tensors.FromFlatDataAndDimensions(v, 8, 512)
	defer Free(x)
	var ms runtime.MemStats
	runtime.GC()
	runtime.ReadMemStats(&ms)
	before := int64(ms.HeapAlloc)
	if _, _, _, err := tr.TrainStep(1e-3, x); err != nil {
		t.Fatal(err)
	}
	runtime.ReadMemStats(&ms) // no GC here: what the step left is what a run would hold
	if after := int64(ms.HeapAlloc); before-after < 2*model {
		t.Fatalf("Go's heap went from %d to %d MB after the first step; the model's three copies (%d MB) should have left it",
			before>>20, after>>20, 3*model>>20)
	}
}
