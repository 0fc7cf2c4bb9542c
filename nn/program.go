package nn

import (
	"fmt"
	"hash/fnv"
	"math/rand/v2"
	"runtime/debug"

	"github.com/gomlx/compute"
	"github.com/gomlx/compute/dtypes"
	"github.com/gomlx/compute/shapes"
	. "github.com/gomlx/gomlx/core/graph"
	"github.com/gomlx/gomlx/core/tensors"
)

// BuildFn builds a model's graph from its scope and data inputs and returns the outputs.
type BuildFn func(s Scope, data []*Node) []*Node

// catch turns a GoMLX panic (the engine reports graph errors by panicking) into an error.
func catch(what string, err *error) {
	if r := recover(); r != nil {
		if e, ok := r.(error); ok {
			*err = fmt.Errorf("%s: %w", what, e)
		} else {
			*err = fmt.Errorf("%s: %v", what, r)
		}
	}
}

// Declare runs the model's dry build and returns its parameters and random inputs in declaration order.
func Declare(backend compute.Backend, dtype dtypes.DType, training bool, dataShapes []shapes.Shape, fn BuildFn) (ps *ParamSet, err error) {
	defer catch("declaring parameters", &err)
	b := &Builder{G: NewGraph(backend, "declare"), DType: dtype, Training: training, declaring: true,
		index: map[string]int{}, randIndex: map[string]int{}, schedIndex: map[string]int{}}
	defer b.G.Finalize()
	data := make([]*Node, len(dataShapes))
	for i, sh := range dataShapes {
		data[i] = Parameter(b.G, fmt.Sprintf("data%d", i), sh)
	}
	fn(b.Root(), data)
	ps = &ParamSet{Params: b.params, Rands: b.rands, EMAs: b.emas, Scheds: b.scheds, index: b.index}
	if err := ps.checkEMAs(); err != nil {
		return nil, err
	}
	ps.trained = ps.trainedPositions()
	return ps, nil
}

// Program is one compiled graph of a model for fixed data shapes. Its inputs are the parameters, then the
// per-step inputs (training only: the random inputs, then the scheduled values), then the data.
type Program struct {
	Set      *ParamSet
	g        *Graph
	backend  compute.Backend
	dtype    dtypes.DType
	nOut     int
	captured []string
	training bool
}

// Compile builds and compiles fn for the given data shapes. capture names intermediate nodes (recorded with
// Scope.Capture) to append to the outputs.
func Compile(backend compute.Backend, ps *ParamSet, dtype dtypes.DType, training bool, dataShapes []shapes.Shape, fn BuildFn, capture ...string) (p *Program, err error) {
	defer catch("building graph", &err)
	b := &Builder{G: NewGraph(backend, "mimlab"), DType: dtype, Training: training, index: ps.index,
		randIndex: map[string]int{}, schedIndex: map[string]int{}, emas: ps.EMAs}
	for _, spec := range ps.Params {
		b.nodes = append(b.nodes, Parameter(b.G, spec.Name, shapes.Make(dtype, spec.Dims...)))
	}
	if training { // inference graphs have no drop path, so no random inputs
		for i, r := range ps.Rands {
			b.randIndex[r.Name] = i
			b.randNodes = append(b.randNodes, Parameter(b.G, "rand:"+r.Name, shapes.Make(dtype, r.Dims...)))
		}
		for i, sc := range ps.Scheds {
			b.schedIndex[sc.Name] = i
			b.schedNodes = append(b.schedNodes, Parameter(b.G, "sched:"+sc.Name, shapes.Make(dtype)))
		}
	}
	if len(capture) > 0 {
		b.EnableCapture()
	}
	data := make([]*Node, len(dataShapes))
	for i, sh := range dataShapes {
		data[i] = Parameter(b.G, fmt.Sprintf("data%d", i), sh)
	}
	outs := fn(b.Root(), data)
	nOut := len(outs)
	for _, name := range capture {
		n, ok := b.captures[name]
		if !ok {
			return nil, fmt.Errorf("no captured node %q", name)
		}
		outs = append(outs, n)
	}
	if err := b.G.Compile(outs...); err != nil {
		return nil, err
	}
	// Building and lowering the graph leaves garbage (about 100 MB for the 384-wide CAE) that Go's heap
	// would keep from the OS while the program runs: peak RSS counts it (BENCHMARKS.md, issue 18).
	debug.FreeOSMemory()
	return &Program{Set: ps, g: b.G, backend: backend, dtype: dtype, nOut: nOut, captured: capture, training: training}, nil
}

// Run executes the program. rands are the per-step inputs of a training program (the random inputs, then
// the scheduled values: PerStep makes them); inference (training = false) programs ignore them.
func (p *Program) Run(params, rands []*tensors.Tensor, data ...*tensors.Tensor) (outs []*tensors.Tensor, err error) {
	defer catch("running graph", &err)
	if len(params) != len(p.Set.Params) {
		return nil, fmt.Errorf("program wants %d parameters, got %d", len(p.Set.Params), len(params))
	}
	if !p.training {
		rands = nil
	} else if len(rands) != len(p.Set.Rands)+len(p.Set.Scheds) {
		return nil, fmt.Errorf("program wants %d random inputs and %d scheduled values, got %d", len(p.Set.Rands), len(p.Set.Scheds), len(rands))
	}
	args := make([]any, 0, len(params)+len(rands)+len(data))
	for _, t := range params {
		args = append(args, t)
	}
	for _, t := range rands {
		args = append(args, t)
	}
	for _, t := range data {
		args = append(args, t)
	}
	return p.g.Run(args...), nil
}

// Finalize frees the compiled graph.
func (p *Program) Finalize() { p.g.Finalize() }

// Free releases tensors now (nil entries and tensors already freed are skipped). Every tensor given to or
// returned by Program.Run must be freed once its values are copied out: on the ort backend such a tensor
// holds native memory that Go's garbage collector never returns (measured: a 4 MB output left to the GC
// leaks 4 MB per call; a sweep grew to 24 GB and was OOM-killed before this was found).
func Free(ts ...*tensors.Tensor) {
	for _, t := range ts {
		if t != nil {
			t.FinalizeAll()
		}
	}
}

// DrawRands draws the per-step random inputs from (seed, step) in declaration order.
func (ps *ParamSet) DrawRands(dtype dtypes.DType, seed, step uint64) []*tensors.Tensor {
	if len(ps.Rands) == 0 {
		return nil
	}
	r := rand.New(rand.NewPCG(seed^0x72616e64, step))
	out := make([]*tensors.Tensor, len(ps.Rands))
	for i, spec := range ps.Rands {
		n := 1
		for _, d := range spec.Dims {
			n *= d
		}
		if dtype == dtypes.Float64 {
			v := make([]float64, n)
			for j := range v {
				v[j] = r.Float64()
			}
			out[i] = tensors.FromFlatDataAndDimensions(v, spec.Dims...)
		} else {
			v := make([]float32, n)
			for j := range v {
				v[j] = r.Float32()
			}
			out[i] = tensors.FromFlatDataAndDimensions(v, spec.Dims...)
		}
	}
	return out
}

// InitParams draws initial values for every parameter from seed, as tensors of dtype.
func (ps *ParamSet) InitParams(dtype dtypes.DType, seed uint64) []*tensors.Tensor {
	vals := ps.initRand(seed)
	out := make([]*tensors.Tensor, len(vals))
	for i, v := range vals {
		out[i] = TensorOf(dtype, v, ps.Params[i].Dims...)
	}
	return out
}

// PerStep are a training program's per-step inputs for step (0-based) of total: the random inputs drawn from
// (seed, step+1), then the scheduled values.
func (ps *ParamSet) PerStep(dtype dtypes.DType, seed uint64, step, total int) []*tensors.Tensor {
	out := ps.DrawRands(dtype, seed, uint64(step+1))
	for _, v := range ps.SchedValues(step, total) {
		if dtype == dtypes.Float64 {
			out = append(out, tensors.FromScalar(v))
		} else {
			out = append(out, tensors.FromScalar(float32(v)))
		}
	}
	return out
}

// InitParamsByName draws each parameter from its own random stream, keyed by seed and the parameter's name,
// so a parameter gets the same values whatever else the set holds (InitParams draws one stream through the
// set in order: the encoder of a CAE set and of a BEiT set then differ). The random-init reference rows use
// it: they must not depend on which method's trial computed them.
func (ps *ParamSet) InitParamsByName(dtype dtypes.DType, seed uint64) []*tensors.Tensor {
	vals := make([][]float32, len(ps.Params))
	for i, p := range ps.Params {
		if p.Trained() {
			h := fnv.New64a()
			h.Write([]byte(p.Name))
			vals[i] = InitValues(p, rand.New(rand.NewPCG(seed, h.Sum64())))
		}
	}
	ps.copyEMAs(vals)
	out := make([]*tensors.Tensor, len(ps.Params))
	for i, v := range vals {
		out[i] = TensorOf(dtype, v, ps.Params[i].Dims...)
	}
	return out
}

// TensorOf makes a tensor of dtype (float32 or float64) from float32 values.
func TensorOf(dtype dtypes.DType, v []float32, dims ...int) *tensors.Tensor {
	if dtype == dtypes.Float64 {
		w := make([]float64, len(v))
		for i, x := range v {
			w[i] = float64(x)
		}
		return tensors.FromFlatDataAndDimensions(w, dims...)
	}
	return tensors.FromFlatDataAndDimensions(append([]float32(nil), v...), dims...)
}

// Float32s copies a float tensor's values as float32.
func Float32s(t *tensors.Tensor) []float32 {
	switch t.DType() {
	case dtypes.Float64:
		v := tensors.MustCopyFlatData[float64](t)
		out := make([]float32, len(v))
		for i, x := range v {
			out[i] = float32(x)
		}
		return out
	default:
		return tensors.MustCopyFlatData[float32](t)
	}
}

// Float64s copies a float tensor's values as float64.
func Float64s(t *tensors.Tensor) []float64 {
	switch t.DType() {
	case dtypes.Float64:
		return tensors.MustCopyFlatData[float64](t)
	default:
		v := tensors.MustCopyFlatData[float32](t)
		out := make([]float64, len(v))
		for i, x := range v {
			out[i] = float64(x)
		}
		return out
	}
}
