package nn

import (
	"fmt"
	"math"

	"github.com/gomlx/compute/dtypes"
	"github.com/gomlx/compute/shapes"
	. "github.com/gomlx/gomlx/core/graph"
	"github.com/gomlx/gomlx/core/tensors"
)

// Gradient accumulation (train.accum_steps): one optimiser step from k micro-batches, so a batch larger than
// memory allows trains on one machine. Each micro-batch runs forward and backward and adds 1/k of its
// gradient to the running sum (one graph: the sum stays with the engine); then one graph clips the summed
// gradient, applies AdamW and updates the EMA copies, exactly as the single-batch step does. For a loss that is
// a mean over samples (every loss here but a contrastive one, whose negatives come from the micro-batch, as
// in PyTorch's accumulation), k micro-batches of b give the step of one batch of k x b, provided the
// micro-batches are the big batch cut in k (AccumStep takes them so) and the per-step random inputs are the
// big batch's: each is drawn for k x b samples from the step's stream and cut, which needs every random
// input to be per sample (the drop path's are).

// microPerStep are micro-batch j (of k) of the per-step inputs: each random input drawn for k times its first
// dimension, as one batch of k x b draws it, and cut to the micro-batch's rows; then the scheduled values.
func (ps *ParamSet) microPerStep(dtype dtypes.DType, seed uint64, step, total, j, k int) ([]*tensors.Tensor, error) {
	big := &ParamSet{}
	for _, r := range ps.Rands {
		if len(r.Dims) == 0 {
			return nil, fmt.Errorf("nn: random input %s is a scalar: gradient accumulation needs per-sample random inputs", r.Name)
		}
		d := append([]int(nil), r.Dims...)
		d[0] *= k
		big.Rands = append(big.Rands, RandSpec{Name: r.Name, Dims: d})
	}
	full := big.DrawRands(dtype, seed, uint64(step+1))
	out := make([]*tensors.Tensor, 0, len(full)+len(ps.Scheds))
	for i, t := range full {
		rows := ps.Rands[i].Dims[0]
		per := t.Shape().Size() / (rows * k)
		lo, hi := j*rows*per, (j+1)*rows*per
		if dtype == dtypes.Float64 {
			out = append(out, tensors.FromFlatDataAndDimensions(append([]float64(nil), tensors.MustCopyFlatData[float64](t)[lo:hi]...), ps.Rands[i].Dims...))
		} else {
			out = append(out, tensors.FromFlatDataAndDimensions(append([]float32(nil), tensors.MustCopyFlatData[float32](t)[lo:hi]...), ps.Rands[i].Dims...))
		}
	}
	Free(full...)
	for _, v := range ps.SchedValues(step, total) {
		if dtype == dtypes.Float64 {
			out = append(out, tensors.FromScalar(v))
		} else {
			out = append(out, tensors.FromScalar(float32(v)))
		}
	}
	return out, nil
}

func (t *Trainer) gradProgram(k int, data []*tensors.Tensor) (*Program, error) {
	key := fmt.Sprintf("grad/%d/%s", k, shapesKey(data))
	if p, ok := t.progs[key]; ok {
		return p, nil
	}
	trained := t.Set.Trained()
	nt := len(trained)
	var dataShapes []shapes.Shape
	for _, i := range trained { // the running sum of the gradients
		dataShapes = append(dataShapes, shapes.Make(t.dtype, t.Set.Params[i].Dims...))
	}
	for _, d := range data {
		dataShapes = append(dataShapes, d.Shape())
	}
	prog, err := Compile(t.backend, t.Set, t.dtype, true, dataShapes, func(s Scope, in []*Node) []*Node {
		loss, metrics := t.loss(s, in[nt:])
		wrt := make([]*Node, nt)
		for q, i := range trained {
			wrt[q] = s.b.nodes[i]
		}
		grads := Gradient(loss, wrt...)
		out := make([]*Node, 0, nt+1+len(metrics))
		for q, g := range grads {
			out = append(out, Add(in[q], MulScalar(g, 1/float64(k))))
		}
		return append(append(out, loss), metrics...)
	})
	if err != nil {
		return nil, err
	}
	t.progs[key] = prog
	return prog, nil
}

func (t *Trainer) applyProgram() (*Program, error) {
	const key = "apply"
	if p, ok := t.progs[key]; ok {
		return p, nil
	}
	trained := t.Set.Trained()
	nt := len(trained)
	var dataShapes []shapes.Shape
	for rep := 0; rep < 3; rep++ { // m, v, the summed gradients
		for _, i := range trained {
			dataShapes = append(dataShapes, shapes.Make(t.dtype, t.Set.Params[i].Dims...))
		}
	}
	for i := 0; i < 3; i++ { // lr, 1-beta1^t, 1-beta2^t
		dataShapes = append(dataShapes, shapes.Make(t.dtype))
	}
	prog, err := Compile(t.backend, t.Set, t.dtype, true, dataShapes, func(s Scope, in []*Node) []*Node {
		ms, vs, grads := in[:nt], in[nt:2*nt], in[2*nt:3*nt]
		outP, outM, outV, norm := t.update(s, s.b.nodes, trained, grads, ms, vs, in[3*nt], in[3*nt+1], in[3*nt+2])
		return append(append(append(outP, outM...), outV...), norm)
	})
	if err != nil {
		return nil, err
	}
	t.progs[key] = prog
	return prog, nil
}

// AccumStep is one optimiser step at learning rate lr from the micro-batches micro (each a list of data
// tensors in the order TrainStep takes, all of one shape): the loss and metrics are their means. One
// micro-batch is TrainStep itself. The data tensors stay the caller's.
func (t *Trainer) AccumStep(lr float64, micro [][]*tensors.Tensor) (loss, gradNorm float64, metrics []float64, err error) {
	k := len(micro)
	if k == 0 {
		return 0, 0, nil, fmt.Errorf("nn: AccumStep with no micro-batch")
	}
	if k == 1 {
		return t.TrainStep(lr, micro[0]...)
	}
	if len(t.Set.Scheds) > 0 && t.Total <= 0 {
		return 0, 0, nil, fmt.Errorf("nn: the model has scheduled values (%s) but the trainer was not told the run's total steps (Trainer.Total)", t.Set.Scheds[0].Name)
	}
	if !t.onDevice {
		if err := t.toDevice(); err != nil {
			return 0, 0, nil, err
		}
	}
	trained := t.Set.Trained()
	nt := len(trained)
	acc := make([]*tensors.Tensor, nt)
	for q, i := range trained {
		acc[q] = TensorOf(t.dtype, make([]float32, t.Set.Params[i].Size()), t.Set.Params[i].Dims...)
	}
	defer func() { Free(acc...) }()
	step := t.Step + 1
	metrics = make([]float64, t.nMet)
	for j, data := range micro {
		prog, err := t.gradProgram(k, data)
		if err != nil {
			return 0, 0, nil, err
		}
		perStep, err := t.Set.microPerStep(t.dtype, t.Seed, t.Step, t.Total, j, k)
		if err != nil {
			return 0, 0, nil, err
		}
		outs, err := prog.Run(t.Params, perStep, append(append([]*tensors.Tensor(nil), acc...), data...)...)
		Free(perStep...)
		if err != nil {
			return 0, 0, nil, err
		}
		Free(acc...)
		copy(acc, outs[:nt])
		l := Float64s(outs[nt])[0]
		loss += l / float64(k)
		for i, m := range outs[nt+1:] {
			metrics[i] += Float64s(m)[0] / float64(k)
		}
		Free(outs[nt:]...)
		if math.IsNaN(l) || math.IsInf(l, 0) {
			return l, 0, metrics, fmt.Errorf("step %d, micro-batch %d of %d: loss is %v", step, j+1, k, l)
		}
	}
	prog, err := t.applyProgram()
	if err != nil {
		return 0, 0, nil, err
	}
	scal := func(v float64) *tensors.Tensor {
		if t.dtype == dtypes.Float64 {
			return tensors.FromScalar(v)
		}
		return tensors.FromScalar(float32(v))
	}
	in := make([]*tensors.Tensor, 0, 3*nt+3)
	for _, i := range trained {
		in = append(in, t.M[i])
	}
	for _, i := range trained {
		in = append(in, t.V[i])
	}
	in = append(in, acc...)
	in = append(in, scal(lr), scal(1-math.Pow(t.Opt.Beta1, float64(step))), scal(1-math.Pow(t.Opt.Beta2, float64(step))))
	perStep := t.Set.PerStep(t.dtype, t.Seed, t.Step, t.Total)
	outs, err := prog.Run(t.Params, perStep, in...)
	Free(perStep...)
	Free(in[3*nt:]...)
	if err != nil {
		return 0, 0, nil, err
	}
	np := len(t.Set.Params)
	gradNorm = Float64s(outs[np+2*nt])[0]
	Free(outs[np+2*nt])
	t.adopt(outs, trained)
	t.Step = step
	return loss, gradNorm, metrics, nil
}

// CutRows splits a tensor (float32, float64 or int64) along its first axis into k equal parts, as new
// tensors: the micro-batches of a batch.
func CutRows(x *tensors.Tensor, k int) []*tensors.Tensor {
	dims := x.Shape().Dimensions
	rows := dims[0] / k
	d := append([]int{rows}, dims[1:]...)
	per := x.Shape().Size() / dims[0] * rows
	out := make([]*tensors.Tensor, k)
	switch x.DType() {
	case dtypes.Int64:
		v := tensors.MustCopyFlatData[int64](x)
		for j := range out {
			out[j] = tensors.FromFlatDataAndDimensions(append([]int64(nil), v[j*per:(j+1)*per]...), d...)
		}
	case dtypes.Float64:
		v := tensors.MustCopyFlatData[float64](x)
		for j := range out {
			out[j] = tensors.FromFlatDataAndDimensions(append([]float64(nil), v[j*per:(j+1)*per]...), d...)
		}
	default:
		v := tensors.MustCopyFlatData[float32](x)
		for j := range out {
			out[j] = tensors.FromFlatDataAndDimensions(append([]float32(nil), v[j*per:(j+1)*per]...), d...)
		}
	}
	return out
}
