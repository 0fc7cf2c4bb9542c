package nn

import (
	"fmt"
	"math"
	"runtime/debug"

	"github.com/gomlx/compute"
	"github.com/gomlx/compute/dtypes"
	"github.com/gomlx/compute/shapes"
	. "github.com/gomlx/gomlx/core/graph"
	"github.com/gomlx/gomlx/core/tensors"
)

// Schedule is CAE's learning rate: per-step linear warmup from 0 to Base over Warmup steps, then a cosine
// from Base to Min at step Total.
type Schedule struct {
	Base, Min     float64
	Warmup, Total int
}

// At is the learning rate of step (0-based).
func (s Schedule) At(step int) float64 {
	if step < s.Warmup {
		return s.Base * float64(step) / float64(s.Warmup)
	}
	span := s.Total - s.Warmup
	if span <= 0 {
		return s.Base
	}
	t := math.Min(1, float64(step-s.Warmup)/float64(span))
	return s.Min + 0.5*(s.Base-s.Min)*(1+math.Cos(math.Pi*t))
}

// Optimizer is PyTorch's AdamW (decoupled weight decay), or SGD with Nesterov momentum, with global-norm
// gradient clipping. Weight decay skips parameters marked NoDecay (1-D parameters and biases).
type Optimizer struct {
	// SGD switches to SGD with Nesterov momentum Beta1 and L2 weight decay added to the gradient (what the
	// official CAE optim_factory runs for "sgd", e.g. the attentive probe); Beta2 and Eps are then unused.
	SGD               bool
	Beta1, Beta2, Eps float64
	WeightDecay       float64
	Clip              float64 // global-norm clip; <= 0 disables it
}

// DefaultAdamW is CAE's optimiser: betas (0.9, 0.999), eps 1e-8, weight decay 0.05, clip 3.
func DefaultAdamW() Optimizer {
	return Optimizer{Beta1: 0.9, Beta2: 0.999, Eps: 1e-8, WeightDecay: 0.05, Clip: 3}
}

// LossFn builds a training loss and the metrics to report beside it (named in the order given).
type LossFn func(s Scope, data []*Node) (loss *Node, metrics []*Node)

// Trainer owns a model's parameters and optimiser state and runs compiled training steps. The whole step
// (forward, backward, clipping, AdamW, the EMA copies' update) is one graph, so parameters and moments stay
// with the engine. M and V have an entry per parameter; an EMA copy's stay zero (it has no optimiser state).
type Trainer struct {
	Set    *ParamSet
	Opt    Optimizer
	Params []*tensors.Tensor
	M, V   []*tensors.Tensor
	Step   int // number of steps taken
	Total  int // the run's steps: the scheduled values (EMA momenta) follow Step / Total
	Seed   uint64
	// LRScale, when set before the first step, multiplies each parameter's learning rate (and so its decoupled
	// weight decay) by its own factor: BEiT/CAE fine-tuning's layer-wise decay. nil = 1 for every parameter.
	LRScale []float64
	backend compute.Backend
	dtype   dtypes.DType
	loss    LossFn
	progs   map[string]*Program
	nMet    int
	// onDevice says the parameters and moments set from Go (initialised, or loaded from a checkpoint) were
	// moved to the engine and their Go copies dropped.
	onDevice bool
}

// NewTrainer declares the model (a dry build on dataShapes) and initialises its parameters from seed.
func NewTrainer(backend compute.Backend, dtype dtypes.DType, loss LossFn, dataShapes []shapes.Shape, opt Optimizer, seed uint64) (*Trainer, error) {
	var nMet int
	ps, err := Declare(backend, dtype, true, dataShapes, func(s Scope, data []*Node) []*Node {
		l, m := loss(s, data)
		nMet = len(m)
		return append([]*Node{l}, m...)
	})
	if err != nil {
		return nil, err
	}
	t := &Trainer{Set: ps, Opt: opt, Seed: seed, backend: backend, dtype: dtype, loss: loss, progs: map[string]*Program{}, nMet: nMet}
	t.Params = ps.InitParams(dtype, seed)
	t.M = make([]*tensors.Tensor, len(ps.Params))
	t.V = make([]*tensors.Tensor, len(ps.Params))
	for i, p := range ps.Params {
		t.M[i] = TensorOf(dtype, make([]float32, p.Size()), p.Dims...)
		t.V[i] = TensorOf(dtype, make([]float32, p.Size()), p.Dims...)
	}
	return t, nil
}

func shapesKey(data []*tensors.Tensor) string {
	k := ""
	for _, d := range data {
		k += d.Shape().String() + ";"
	}
	return k
}

func (t *Trainer) program(data []*tensors.Tensor) (*Program, error) {
	key := shapesKey(data)
	if p, ok := t.progs[key]; ok {
		return p, nil
	}
	trained := t.Set.Trained()
	nt := len(trained)
	var dataShapes []shapes.Shape
	for _, i := range trained { // m
		dataShapes = append(dataShapes, shapes.Make(t.dtype, t.Set.Params[i].Dims...))
	}
	for _, i := range trained { // v
		dataShapes = append(dataShapes, shapes.Make(t.dtype, t.Set.Params[i].Dims...))
	}
	for i := 0; i < 3; i++ { // lr, 1-beta1^t, 1-beta2^t
		dataShapes = append(dataShapes, shapes.Make(t.dtype))
	}
	for _, d := range data {
		dataShapes = append(dataShapes, d.Shape())
	}
	prog, err := Compile(t.backend, t.Set, t.dtype, true, dataShapes, func(s Scope, in []*Node) []*Node {
		ms, vs := in[:nt], in[nt:2*nt]
		lr, bc1, bc2 := in[2*nt], in[2*nt+1], in[2*nt+2]
		loss, metrics := t.loss(s, in[2*nt+3:])
		params := s.b.nodes
		// Only the trained parameters are differentiated: an EMA copy gets no gradient, no share of the
		// clipping norm, no weight decay and no optimiser state.
		wrt := make([]*Node, nt)
		for k, i := range trained {
			wrt[k] = params[i]
		}
		grads := Gradient(loss, wrt...)
		outP, outM, outV, norm := t.update(s, params, trained, grads, ms, vs, lr, bc1, bc2)
		out := append(append(append(outP, outM...), outV...), loss, norm)
		return append(out, metrics...)
	})
	if err != nil {
		return nil, err
	}
	t.progs[key] = prog
	return prog, nil
}

// update is one optimiser step in the graph: global-norm clipping of the trained parameters' gradients, AdamW
// (or SGD), then each EMA copy towards its source's new value. It returns every parameter's new value, the
// trained parameters' new moments, and the gradient norm before clipping.
func (t *Trainer) update(s Scope, params []*Node, trained []int, grads, ms, vs []*Node, lr, bc1, bc2 *Node) (outP, outM, outV []*Node, norm *Node) {
	opt := t.Opt
	nt := len(trained)
	sq := make([]*Node, nt)
	for k, g := range grads {
		sq[k] = ReduceAllSum(Square(g))
	}
	total := sq[0]
	for _, x := range sq[1:] {
		total = Add(total, x)
	}
	norm = Sqrt(total)
	scale := s.Scalar(1)
	if opt.Clip > 0 {
		scale = Min(scale, Div(s.Scalar(opt.Clip), AddScalar(norm, 1e-6)))
	}
	outP = make([]*Node, len(params))
	outM = make([]*Node, nt)
	outV = make([]*Node, nt)
	for k, i := range trained {
		p := params[i]
		noDecay := t.Set.Params[i].NoDecay
		g := Mul(grads[k], scale)
		lr := lr
		if t.LRScale != nil && t.LRScale[i] != 1 {
			lr = MulScalar(lr, t.LRScale[i])
		}
		if opt.SGD {
			if opt.WeightDecay > 0 && !noDecay {
				g = Add(g, MulScalar(p, opt.WeightDecay))
			}
			buf := Add(MulScalar(ms[k], opt.Beta1), g)
			outP[i] = Sub(p, Mul(lr, Add(g, MulScalar(buf, opt.Beta1))))
			outM[k], outV[k] = buf, vs[k]
			continue
		}
		m := Add(MulScalar(ms[k], opt.Beta1), MulScalar(g, 1-opt.Beta1))
		v := Add(MulScalar(vs[k], opt.Beta2), MulScalar(Square(g), 1-opt.Beta2))
		if opt.WeightDecay > 0 && !noDecay {
			p = Sub(p, Mul(p, MulScalar(lr, opt.WeightDecay)))
		}
		upd := Div(Div(m, bc1), AddScalar(Sqrt(Div(v, bc2)), opt.Eps))
		outP[i] = Sub(p, Mul(lr, upd))
		outM[k], outV[k] = m, v
	}
	// After the optimiser step: each EMA copy moves towards its source's new value.
	momentum := map[string]*Node{}
	for _, e := range t.Set.EMAs {
		momentum[e.Prefix] = s.Scheduled(e.MomentumName(), e.Momentum)
	}
	for i, spec := range t.Set.Params {
		if spec.Trained() {
			continue
		}
		j, _ := t.Set.Index(spec.EMAOf)
		mom := momentum[spec.EMAGroup]
		outP[i] = Add(Mul(params[i], mom), Mul(OneMinus(mom), outP[j]))
	}
	return outP, outM, outV, norm
}

// TrainStep runs one step at learning rate lr and returns the loss, the gradient norm before clipping and
// the metrics of the loss function. The data tensors stay the caller's, to free (Free) after the step.
// A model with scheduled values (EMA momenta, Scope.Scheduled) needs Total, the steps of the whole run.
func (t *Trainer) TrainStep(lr float64, data ...*tensors.Tensor) (loss, gradNorm float64, metrics []float64, err error) {
	if len(t.Set.Scheds) > 0 && t.Total <= 0 {
		return 0, 0, nil, fmt.Errorf("nn: the model has scheduled values (%s) but the trainer was not told the run's total steps (Trainer.Total)", t.Set.Scheds[0].Name)
	}
	prog, err := t.program(data)
	if err != nil {
		return 0, 0, nil, err
	}
	if !t.onDevice {
		if err := t.toDevice(); err != nil {
			return 0, 0, nil, err
		}
	}
	np := len(t.Set.Params)
	trained := t.Set.Trained()
	nt := len(trained)
	step := t.Step + 1
	scal := func(v float64) *tensors.Tensor {
		if t.dtype == dtypes.Float64 {
			return tensors.FromScalar(v)
		}
		return tensors.FromScalar(float32(v))
	}
	in := make([]*tensors.Tensor, 0, 2*nt+3+len(data))
	for _, i := range trained {
		in = append(in, t.M[i])
	}
	for _, i := range trained {
		in = append(in, t.V[i])
	}
	in = append(in, scal(lr), scal(1-math.Pow(t.Opt.Beta1, float64(step))), scal(1-math.Pow(t.Opt.Beta2, float64(step))))
	in = append(in, data...)
	perStep := t.Set.PerStep(t.dtype, t.Seed, t.Step, t.Total)
	outs, err := prog.Run(t.Params, perStep, in...)
	Free(perStep...)
	Free(in[2*nt : 2*nt+3]...) // the scalars; the data belong to the caller
	if err != nil {
		return 0, 0, nil, err
	}
	rest := np + 2*nt
	loss = Float64s(outs[rest])[0]
	gradNorm = Float64s(outs[rest+1])[0]
	for _, m := range outs[rest+2:] {
		metrics = append(metrics, Float64s(m)[0])
	}
	Free(outs[rest:]...)
	if math.IsNaN(loss) || math.IsInf(loss, 0) {
		Free(outs[:rest]...)
		return loss, gradNorm, metrics, fmt.Errorf("step %d: loss is %v", step, loss)
	}
	t.adopt(outs, trained)
	t.Step = step
	return loss, gradNorm, metrics, nil
}

// adopt takes a step's outputs as the trainer's state: every parameter's new value, then the trained ones'
// new first and second moments; what they replace is freed.
func (t *Trainer) adopt(outs []*tensors.Tensor, trained []int) {
	np, nt := len(t.Set.Params), len(trained)
	Free(t.Params...)
	t.Params = outs[:np:np]
	for k, i := range trained {
		Free(t.M[i], t.V[i])
		t.M[i], t.V[i] = outs[np+k], outs[np+nt+k]
	}
}

// toDevice moves the parameters and moments set from Go (NewTrainer's initialisation, or a checkpoint loaded
// into Params, M and V) to the engine, drops their Go copies and returns that memory to the OS. Without it the
// Go copies (three times the model: 166 MB for the 384-wide CAE) stay resident through the first step, where
// they are inputs beside the engine's copies, and after it as garbage that Go's collector has no reason to
// collect: peak RSS counted them twice (BENCHMARKS.md, issue 18).
func (t *Trainer) toDevice() error {
	for _, ts := range [][]*tensors.Tensor{t.Params, t.M, t.V} {
		for i, x := range ts {
			if err := x.ToDevice(t.backend, 0); err != nil {
				return fmt.Errorf("moving parameter %s to the engine: %w", t.Set.Params[i].Name, err)
			}
		}
	}
	debug.FreeOSMemory()
	t.onDevice = true
	return nil
}

// Finalize frees the compiled programs, the optimiser state and the parameters. A caller that keeps the
// parameters takes them first (params, t.Params = t.Params, nil) and frees them itself.
func (t *Trainer) Finalize() {
	for _, p := range t.progs {
		p.Finalize()
	}
	t.progs = map[string]*Program{}
	Free(t.Params...)
	Free(t.M...)
	Free(t.V...)
	t.Params, t.M, t.V = nil, nil, nil
}
