package eval

import (
	"context"
	"fmt"
	"math"
	"math/rand/v2"

	"github.com/gomlx/compute"
	"github.com/gomlx/compute/dtypes"
	"github.com/gomlx/compute/shapes"
	. "github.com/gomlx/gomlx/core/graph"
	"github.com/gomlx/gomlx/core/tensors"
	"mimlab/nn"
)

// AttentiveConfig sizes the attentive probe.
type AttentiveConfig struct {
	Heads     int
	Epochs    int
	LR        float64
	Batch     int
	Optimizer string // adamw or sgd
	WD        float64
	Seed      uint64
}

// attentivePool is the probe without its BatchNorm and head: one learned query (zero init), LN_q on it,
// LN_k and LN_v on the tokens, multi-head cross-attention (q/v biases, no k bias) and its projection; no
// residual, no MLP, no position embedding (cae-facts 6). tokens [B,T,D] -> [B,D].
func attentivePool(s nn.Scope, tokens *Node, heads int) *Node {
	b, d := tokens.Shape().Dimensions[0], tokens.Shape().Dimensions[2]
	q := s.Param("query", []int{1, 1, d}, nn.Init{})
	q = BroadcastToDims(q, b, 1, d)
	out := nn.CrossAttention(s.Sub("cross_attn"), nn.LayerNorm(s.Sub("norm_q"), q), nn.LayerNorm(s.Sub("norm_k"), tokens), nn.LayerNorm(s.Sub("norm_v"), tokens), heads)
	return Reshape(out, b, d)
}

func attentiveHead(s nn.Scope, x *Node, classes int) *Node {
	return nn.LinearInit(s.Sub("head"), x, classes, true, nn.Init{Kind: nn.InitNormal, Std: 0.01})
}

// batchNorm standardises x [B,D] with its batch statistics (BatchNorm without affine, training mode).
func batchNorm(x *Node) *Node {
	mean := ReduceAndKeep(x, ReduceMean, 0)
	c := Sub(x, mean)
	v := ReduceAndKeep(Square(c), ReduceMean, 0)
	return Div(c, Sqrt(AddScalar(v, 1e-6)))
}

// Attentive trains the attentive probe on train tokens and returns test top-1. At test time the
// BatchNorm uses the statistics of the whole train split ("precise BN").
// It stops within a step when ctx is cancelled, returning an error wrapping ctx.Err().
func Attentive(ctx context.Context, be compute.Backend, train, test Tokens, cfg AttentiveConfig) (float64, error) {
	if train.N < cfg.Batch {
		cfg.Batch = train.N
	}
	c := numClasses(train.Labels, test.Labels)
	t, d := train.T, train.D
	tokShape := shapes.Make(dtypes.Float32, cfg.Batch, t, d)
	labShape := shapes.Make(dtypes.Int64, cfg.Batch)
	loss := func(s nn.Scope, in []*Node) (*Node, []*Node) {
		logits := attentiveHead(s, batchNorm(attentivePool(s, in[0], cfg.Heads)), c)
		return nn.SoftmaxCrossEntropy(logits, in[1]), []*Node{nn.Accuracy(logits, in[1])}
	}
	opt := nn.Optimizer{Beta1: 0.9, Beta2: 0.999, Eps: 1e-8, WeightDecay: cfg.WD}
	if cfg.Optimizer == "sgd" {
		opt = nn.Optimizer{SGD: true, Beta1: 0.9, WeightDecay: cfg.WD}
	}
	tr, err := nn.NewTrainer(be, dtypes.Float32, loss, []shapes.Shape{tokShape, labShape}, opt, cfg.Seed+7)
	if err != nil {
		return 0, fmt.Errorf("attentive probe: %w", err)
	}
	defer tr.Finalize()
	steps := cfg.Epochs * (train.N / cfg.Batch)
	sched := nn.Schedule{Base: cfg.LR, Min: 0, Warmup: steps / 10, Total: steps}
	r := rand.New(rand.NewPCG(cfg.Seed, 0x617474))
	step := 0
	bufX := make([]float32, cfg.Batch*t*d)
	bufY := make([]int64, cfg.Batch)
	for ep := 0; ep < cfg.Epochs; ep++ {
		perm := r.Perm(train.N)
		for lo := 0; lo+cfg.Batch <= train.N; lo += cfg.Batch {
			if err := ctx.Err(); err != nil {
				return 0, fmt.Errorf("attentive probe: stopped at step %d/%d: %w", step, steps, err)
			}
			for i, j := range perm[lo : lo+cfg.Batch] {
				copy(bufX[i*t*d:(i+1)*t*d], train.X[j*t*d:(j+1)*t*d])
				bufY[i] = int64(train.Labels[j])
			}
			x, y := tensors.FromFlatDataAndDimensions(bufX, cfg.Batch, t, d), tensors.FromFlatDataAndDimensions(bufY, cfg.Batch)
			_, _, _, err := tr.TrainStep(sched.At(step), x, y)
			nn.Free(x, y)
			if err != nil {
				return 0, fmt.Errorf("attentive probe step %d: %w", step, err)
			}
			step++
		}
	}
	// Pooled features of both splits with the trained probe.
	pool := func(tk Tokens) ([]float32, error) {
		progs := map[int]*nn.Program{}
		defer func() {
			for _, p := range progs {
				p.Finalize()
			}
		}()
		out := make([]float32, 0, tk.N*d)
		for lo := 0; lo < tk.N; lo += cfg.Batch {
			hi := min(lo+cfg.Batch, tk.N)
			n := hi - lo
			p, ok := progs[n]
			if !ok {
				p, err = nn.Compile(be, tr.Set, dtypes.Float32, false, []shapes.Shape{shapes.Make(dtypes.Float32, n, t, d)}, func(s nn.Scope, in []*Node) []*Node {
					return []*Node{attentivePool(s, in[0], cfg.Heads)}
				})
				if err != nil {
					return nil, err
				}
				progs[n] = p
			}
			in := tensors.FromFlatDataAndDimensions(tk.X[lo*t*d:hi*t*d], n, t, d)
			o, err := p.Run(tr.Params, nil, in)
			nn.Free(in)
			if err != nil {
				return nil, err
			}
			out = append(out, nn.Float32s(o[0])...)
			nn.Free(o...)
		}
		return out, nil
	}
	ptr, err := pool(train)
	if err != nil {
		return 0, err
	}
	pte, err := pool(test)
	if err != nil {
		return 0, err
	}
	_, fte := Standardize(Features{X: ptr, N: train.N, D: d}, Features{X: pte, N: test.N, D: d})
	wi, _ := tr.Set.Index("head.weight")
	bi, _ := tr.Set.Index("head.bias")
	w, b := nn.Float32s(tr.Params[wi]), nn.Float32s(tr.Params[bi])
	correct := 0
	for i := 0; i < test.N; i++ {
		best, bk := math.Inf(-1), 0
		for k := 0; k < c; k++ {
			s := float64(b[k])
			for j := 0; j < d; j++ {
				s += float64(w[k*d+j]) * float64(fte.X[i*d+j])
			}
			if s > best {
				best, bk = s, k
			}
		}
		if bk == test.Labels[i] {
			correct++
		}
	}
	return float64(correct) / float64(test.N), nil
}
