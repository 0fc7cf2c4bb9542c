package nn

import (
	"fmt"
	"slices"
	"sync"
	"testing"

	"github.com/gomlx/compute/dtypes"
	"github.com/gomlx/compute/shapes"
	. "github.com/gomlx/gomlx/core/graph"
	"github.com/gomlx/gomlx/core/tensors"
)

// TestConcurrentRuns: programs run from several goroutines at once (what the workers of `sweep run -j N`
// do) give the results each gives alone. The patched compute-onnx no longer serialises every Run of the
// process behind one lock (third_party/compute-onnx/MIMLAB.md), so on ort these runs overlap.
func TestConcurrentRuns(t *testing.T) {
	be := ortBackend(t, "the lock this checks is ort's")
	type prog struct {
		p      *Program
		params []*tensors.Tensor
		width  int
	}
	var progs []prog
	for i, width := range []int{32, 48, 32} { // the first and last: two programs of one shape
		shp := []shapes.Shape{shapes.Make(dtypes.Float32, 16, 24)}
		fn := func(s Scope, in []*Node) []*Node {
			h := Linear(s.Sub("a"), in[0], width, true)
			return []*Node{Linear(s.Sub("b"), Tanh(h), 8, true)}
		}
		ps, err := Declare(be, dtypes.Float32, false, shp, fn)
		if err != nil {
			t.Fatal(err)
		}
		p, err := Compile(be, ps, dtypes.Float32, false, shp, fn)
		if err != nil {
			t.Fatal(err)
		}
		progs = append(progs, prog{p, ps.InitParams(dtypes.Float32, uint64(i+1)), width})
	}
	defer func() {
		for _, p := range progs {
			p.p.Finalize()
			Free(p.params...)
		}
	}()
	input := func(k int) []float32 {
		x := make([]float32, 16*24)
		for i := range x {
			x[i] = float32((i*7+k*13)%29)/29 - 0.5
		}
		return x
	}
	run := func(p prog, k int) ([]float32, error) {
		in := tensors.FromFlatDataAndDimensions(input(k), 16, 24)
		defer Free(in)
		out, err := p.p.Run(p.params, nil, in)
		if err != nil {
			return nil, err
		}
		defer Free(out...)
		return Float32s(out[0]), nil
	}
	const inputs = 40
	want := make([][][]float32, len(progs))
	for i, p := range progs {
		for k := 0; k < inputs; k++ {
			v, err := run(p, k)
			if err != nil {
				t.Fatal(err)
			}
			want[i] = append(want[i], v)
		}
	}
	var wg sync.WaitGroup
	errs := make(chan error, 2*len(progs))
	for g := 0; g < 2; g++ { // two goroutines per program, each over every input
		for i, p := range progs {
			wg.Add(1)
			go func() {
				defer wg.Done()
				for k := 0; k < inputs; k++ {
					v, err := run(p, (k+g*17)%inputs)
					if err != nil {
						errs <- err
						return
					}
					if !slices.Equal(v, want[i][(k+g*17)%inputs]) {
						errs <- fmt.Errorf("program %d (width %d), input %d: concurrent result differs from the serial one", i, p.width, (k+g*17)%inputs)
						return
					}
				}
			}()
		}
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
}
