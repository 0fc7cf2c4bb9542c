package targets

import (
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"math"
	"math/rand/v2"
	"os"
	"path/filepath"
	"strconv"
	"sync"
	"time"

	"github.com/gomlx/compute"
	"github.com/gomlx/compute/dtypes"
	"github.com/gomlx/compute/shapes"
	. "github.com/gomlx/gomlx/core/graph"
	"github.com/gomlx/gomlx/core/tensors"
	"mimlab/data"
	"mimlab/framework/registry"
	"mimlab/nn"
)

// The dvae tokenizer is a VQ-VAE over single patches: an MLP encoder (C*p*p -> hidden -> code_dim), a
// codebook of `vocab` vectors (nearest neighbour, straight-through gradient, codebook and commitment losses
// as van den Oord et al.), and an MLP decoder back to the patch's pixels. Codes unused in a step are
// restarted at random encoder outputs every 50 steps, so the codebook stays in use. One token per patch, the
// token grid is the ViT's patch grid.

// DVAEConfig is [targets] for name = "dvae".
type DVAEConfig struct {
	Name    string  `toml:"name"`
	Vocab   int     `toml:"vocab" doc:"codebook size (tokens)"`
	Hidden  int     `toml:"hidden" doc:"MLP width of the tokenizer"`
	CodeDim int     `toml:"code_dim" doc:"width of a code vector"`
	Steps   int     `toml:"steps" doc:"tokenizer training steps"`
	LR      float64 `toml:"lr" doc:"tokenizer learning rate"`
	Beta    float64 `toml:"beta" doc:"commitment weight"`
	Seed    uint64  `toml:"seed" doc:"tokenizer seed"`
}

// Validate checks the section.
func (c *DVAEConfig) Validate() error {
	switch {
	case c.Vocab < 2 || c.Vocab > 65536:
		return fmt.Errorf("targets.vocab = %d: must be in [2, 65536]", c.Vocab)
	case c.Hidden < 1 || c.CodeDim < 1 || c.Hidden > 1<<16 || c.CodeDim > 1<<16:
		return fmt.Errorf("targets.hidden = %d, targets.code_dim = %d: must be in [1, 65536]", c.Hidden, c.CodeDim)
	case c.Steps < 1 || c.Steps > 1e7:
		return fmt.Errorf("targets.steps = %d: must be in [1, 10000000]", c.Steps)
	case c.LR <= 0 || c.LR > 10:
		return fmt.Errorf("targets.lr = %v: must be in (0, 10]", c.LR)
	case c.Beta < 0:
		return fmt.Errorf("targets.beta = %v: must be >= 0", c.Beta)
	}
	return nil
}

func init() {
	Registry.Register(registry.Entry[Factory]{
		Name: "dvae", Doc: "tokens from a per-patch VQ-VAE trained on the experiment's own data (cached by hash), CE",
		NewConfig: func() registry.Config {
			return &DVAEConfig{Name: "dvae", Vocab: 64, Hidden: 64, CodeDim: 16, Steps: 600, LR: 2e-3, Beta: 0.25}
		},
		Build: func(c registry.Config) (Factory, error) { return dvaeFactory{*c.(*DVAEConfig)}, nil },
	})
}

type dvaeFactory struct{ c DVAEConfig }

func (dvaeFactory) Continuous() bool { return false }

// dvaeCache serialises tokenizer training inside a process (trials run in parallel share one tokenizer).
var dvaeCache sync.Mutex

func (f dvaeFactory) key(env Env) string {
	b, _ := json.Marshal(struct {
		Data   string
		Patch  int
		Config DVAEConfig
	}{env.DataKey, env.Patch, f.c})
	h := sha256.Sum256(b)
	return hex.EncodeToString(h[:])[:16]
}

func (f dvaeFactory) Prepare(env Env) (Target, error) {
	dvaeCache.Lock()
	defer dvaeCache.Unlock()
	path := filepath.Join(env.CacheDir, "tokenizers", "dvae-"+f.key(env)+".safetensors")
	tok := &DVAE{cfg: f.c, patch: env.Patch, channels: env.Data.Channels, backend: env.Backend, path: path}
	if err := tok.declare(); err != nil {
		return nil, err
	}
	if arrays, meta, err := nn.LoadSafetensors(path); err == nil {
		tok.params = tok.set.InitParams(dtypes.Float32, 0)
		if err := nn.FromArrays(tok.set, arrays, "", tok.params); err != nil {
			return nil, fmt.Errorf("tokenizer %s: %w (delete it to retrain)", path, err)
		}
		tok.info = map[string]float64{}
		for k, v := range meta {
			if x, err := strconv.ParseFloat(v, 64); err == nil {
				tok.info[k] = x
			}
		}
		fmt.Fprintf(env.Log, "dvae tokenizer: reusing %s\n", path)
	} else {
		if err := tok.train(env); err != nil {
			return nil, err
		}
	}
	return tokenTarget{tok}, nil
}

// tokenTarget is a discrete target: one token per patch from a tokenizer, cross-entropy on the masked ones.
type tokenTarget struct{ t Tokenizer }

func (t tokenTarget) Dim() int {
	if t.t == nil { // a plan-time stand-in
		return 2
	}
	return t.t.Vocab()
}
func (t tokenTarget) Tokenizer() Tokenizer                        { return t.t }
func (t tokenTarget) Loss(pred *Node, in Inputs) (*Node, []*Node) { return tokenLoss(pred, in) }
func (t tokenTarget) MetricNames() []string                       { return []string{"token_acc"} }
func (t tokenTarget) InputShape(b, n int) shapes.Shape            { return shapes.Make(dtypes.Int64, b, n) }
func (t tokenTarget) Input(images []float32, batch int) (*tensors.Tensor, error) {
	toks, err := t.t.Tokenize(images, batch)
	if err != nil {
		return nil, fmt.Errorf("tokenizing: %w", err)
	}
	return tensors.FromFlatDataAndDimensions(toks, batch, len(toks)/batch), nil
}
func (t tokenTarget) Close() {
	if c, ok := t.t.(interface{ Close() }); ok {
		c.Close()
	}
}

// DVAE is the trained per-patch VQ-VAE tokenizer.
type DVAE struct {
	cfg      DVAEConfig
	patch    int
	channels int
	backend  compute.Backend
	path     string
	set      *nn.ParamSet
	params   []*tensors.Tensor
	info     map[string]float64
	mu       sync.Mutex
	progs    map[int]*nn.Program
}

func (d *DVAE) pdim() int { return d.channels * d.patch * d.patch }

// encode maps patches [T,P] to encoder outputs [T,code].
func (d *DVAE) encode(s nn.Scope, x *Node) *Node {
	h := nn.GELU(nn.Linear(s.Sub("enc.fc1"), x, d.cfg.Hidden, true))
	return nn.Linear(s.Sub("enc.fc2"), h, d.cfg.CodeDim, true)
}

func (d *DVAE) codebook(s nn.Scope) *Node {
	return s.Param("codebook", []int{d.cfg.Vocab, d.cfg.CodeDim}, nn.Init{Kind: nn.InitNormal, Std: 1})
}

// nearest returns the index [T] (int64) of the nearest code to each row of z [T,code].
func nearest(z, cb *Node) *Node {
	dist := Sub(ReduceAndKeep(Square(z), ReduceSum, -1), MulScalar(Einsum("tc,vc->tv", z, cb), 2))
	dist = Add(dist, ExpandAxes(ReduceSum(Square(cb), -1), 0))
	return ArgMin(dist, 1, dtypes.Int64)
}

func (d *DVAE) lossFn(s nn.Scope, in []*Node) (*Node, []*Node) {
	x := in[0] // [T,P]
	t := x.Shape().Dimensions[0]
	ze := d.encode(s, x)
	cb := d.codebook(s)
	idx := nearest(ze, cb)
	zq := Gather(cb, Reshape(idx, t, 1))
	st := Add(ze, StopGradient(Sub(zq, ze))) // straight-through
	h := nn.GELU(nn.Linear(s.Sub("dec.fc1"), st, d.cfg.Hidden, true))
	rec := nn.Linear(s.Sub("dec.fc2"), h, d.pdim(), true)
	recLoss := nn.MSE(rec, x)
	vq := nn.MSE(StopGradient(ze), zq)
	commit := nn.MSE(ze, StopGradient(zq))
	loss := Add(Add(recLoss, vq), MulScalar(commit, d.cfg.Beta))
	return loss, []*Node{recLoss, ConvertDType(idx, x.DType())}
}

func (d *DVAE) declare() error {
	var err error
	d.set, err = nn.Declare(d.backend, dtypes.Float32, false, []shapes.Shape{shapes.Make(dtypes.Float32, 8, d.pdim())},
		func(s nn.Scope, in []*Node) []*Node { l, _ := d.lossFn(s, in); return []*Node{l} })
	return err
}

// patchesOf copies the patches (c,i,j order, as nn.Patchify) of images idx of a split into a [T,P] buffer.
func patchesOf(split *data.Split, idx []int, c, size, p int) []float32 {
	g := size / p
	pd := c * p * p
	out := make([]float32, 0, len(idx)*g*g*pd)
	il := c * size * size
	for _, i := range idx {
		img := split.Images[i*il : (i+1)*il]
		for gy := 0; gy < g; gy++ {
			for gx := 0; gx < g; gx++ {
				for ch := 0; ch < c; ch++ {
					for y := 0; y < p; y++ {
						row := img[(ch*size+gy*p+y)*size+gx*p:]
						out = append(out, row[:p]...)
					}
				}
			}
		}
	}
	return out
}

func (d *DVAE) train(env Env) error {
	const imgsPerStep = 32
	ds := env.Data
	g := ds.Size / d.patch
	t := imgsPerStep * g * g
	shp := []shapes.Shape{shapes.Make(dtypes.Float32, t, d.pdim())}
	opt := nn.Optimizer{Beta1: 0.9, Beta2: 0.999, Eps: 1e-8, WeightDecay: 0, Clip: 1}
	tr, err := nn.NewTrainer(d.backend, dtypes.Float32, d.lossFn, shp, opt, d.cfg.Seed+1)
	if err != nil {
		return fmt.Errorf("dvae tokenizer: %w", err)
	}
	defer tr.Finalize()
	r := rand.New(rand.NewPCG(d.cfg.Seed, 0x64766165))
	sample := func() []float32 {
		idx := make([]int, imgsPerStep)
		for i := range idx {
			idx[i] = r.IntN(ds.Train.N)
		}
		return patchesOf(&ds.Train, idx, ds.Channels, ds.Size, d.patch)
	}
	cbIdx, _ := tr.Set.Index("codebook")
	encodeProg, err := nn.Compile(d.backend, tr.Set, dtypes.Float32, false, shp, func(s nn.Scope, in []*Node) []*Node {
		return []*Node{d.encode(s, in[0])}
	})
	if err != nil {
		return err
	}
	defer encodeProg.Finalize()
	// Start the codebook at encoder outputs of real patches.
	restart := func(used []bool, x []float32) error {
		in := tensors.FromFlatDataAndDimensions(x, t, d.pdim())
		o, err := encodeProg.Run(tr.Params, nil, in)
		nn.Free(in)
		if err != nil {
			return err
		}
		ze := nn.Float32s(o[0])
		nn.Free(o...)
		cb := nn.Float32s(tr.Params[cbIdx])
		for v := 0; v < d.cfg.Vocab; v++ {
			if used != nil && used[v] {
				continue
			}
			j := r.IntN(t)
			copy(cb[v*d.cfg.CodeDim:(v+1)*d.cfg.CodeDim], ze[j*d.cfg.CodeDim:(j+1)*d.cfg.CodeDim])
		}
		nn.Free(tr.Params[cbIdx])
		tr.Params[cbIdx] = tensors.FromFlatDataAndDimensions(cb, d.cfg.Vocab, d.cfg.CodeDim)
		return nil
	}
	if err := restart(nil, sample()); err != nil {
		return err
	}
	sched := nn.Schedule{Base: d.cfg.LR, Min: d.cfg.LR / 20, Warmup: d.cfg.Steps / 20, Total: d.cfg.Steps}
	used := make([]bool, d.cfg.Vocab)
	start := time.Now()
	var first, last float64
	for step := 0; step < d.cfg.Steps; step++ {
		if err := env.Err(); err != nil {
			return fmt.Errorf("dvae tokenizer: stopped at step %d/%d: %w", step, d.cfg.Steps, err)
		}
		x := sample()
		in := tensors.FromFlatDataAndDimensions(x, t, d.pdim())
		_, _, met, err := tr.TrainStep(sched.At(step), in)
		nn.Free(in)
		if err != nil {
			return fmt.Errorf("dvae tokenizer step %d: %w", step, err)
		}
		if step == 0 {
			first = met[0]
		}
		last = met[0]
		// idx metric is a mean of indices; usage is tracked by re-encoding below when restarting.
		if (step+1)%50 == 0 && step+1 < d.cfg.Steps*4/5 {
			for i := range used {
				used[i] = false
			}
			toks, err := d.tokensWith(tr.Params, tr.Set, x, t)
			if err != nil {
				return err
			}
			for _, k := range toks {
				used[k] = true
			}
			if err := restart(used, x); err != nil {
				return err
			}
		}
		if (step+1)%100 == 0 || step+1 == d.cfg.Steps {
			fmt.Fprintf(env.Log, "dvae tokenizer: step %d/%d reconstruction MSE %.5f (%.0fs)\n", step+1, d.cfg.Steps, last, time.Since(start).Seconds())
		}
	}
	d.params, tr.Params = tr.Params, nil // the tokenizer keeps them; tr.Finalize frees the rest
	// Codebook usage on (up to) 2,000 test images: the fraction of codes used and the perplexity.
	n := min(2000, ds.Test.N)
	counts := make([]float64, d.cfg.Vocab)
	total := 0.0
	for lo := 0; lo+imgsPerStep <= n; lo += imgsPerStep {
		idx := make([]int, imgsPerStep)
		for i := range idx {
			idx[i] = lo + i
		}
		toks, err := d.tokensWith(d.params, d.set, patchesOf(&ds.Test, idx, ds.Channels, ds.Size, d.patch), t)
		if err != nil {
			return err
		}
		for _, k := range toks {
			counts[k]++
			total++
		}
	}
	usedN, ent := 0, 0.0
	for _, c := range counts {
		if c > 0 {
			usedN++
			p := c / total
			ent -= p * math.Log(p)
		}
	}
	d.info = map[string]float64{
		"codebook_usage":      float64(usedN) / float64(d.cfg.Vocab),
		"codebook_perplexity": math.Exp(ent),
		"recon_mse_first":     first,
		"recon_mse_last":      last,
		"vocab":               float64(d.cfg.Vocab),
		"train_seconds":       time.Since(start).Seconds(),
	}
	fmt.Fprintf(env.Log, "dvae tokenizer: codebook usage %d/%d codes on test patches, perplexity %.1f\n", usedN, d.cfg.Vocab, math.Exp(ent))
	meta := map[string]string{}
	for k, v := range d.info {
		meta[k] = strconv.FormatFloat(v, 'g', -1, 64)
	}
	if err := os.MkdirAll(filepath.Dir(d.path), 0o755); err != nil {
		return err
	}
	return nn.SaveSafetensors(d.path, nn.ToArrays(d.set, d.params, ""), meta)
}

// tokensWith runs the nearest-code lookup for patches x [t,P].
func (d *DVAE) tokensWith(params []*tensors.Tensor, set *nn.ParamSet, x []float32, t int) ([]int64, error) {
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.progs == nil {
		d.progs = map[int]*nn.Program{}
	}
	prog, ok := d.progs[t]
	if !ok {
		var err error
		prog, err = nn.Compile(d.backend, set, dtypes.Float32, false, []shapes.Shape{shapes.Make(dtypes.Float32, t, d.pdim())},
			func(s nn.Scope, in []*Node) []*Node { return []*Node{nearest(d.encode(s, in[0]), d.codebook(s))} })
		if err != nil {
			return nil, err
		}
		d.progs[t] = prog
	}
	in := tensors.FromFlatDataAndDimensions(x, t, d.pdim())
	defer nn.Free(in)
	o, err := prog.Run(params, nil, in)
	if err != nil {
		return nil, err
	}
	defer nn.Free(o...)
	return tensors.MustCopyFlatData[int64](o[0]), nil
}

// Tokenize implements Tokenizer: images B x C x S x S -> B x N tokens.
func (d *DVAE) Tokenize(images []float32, batch int) ([]int64, error) {
	size := int(math.Round(math.Sqrt(float64(len(images) / batch / d.channels))))
	g := size / d.patch
	idx := make([]int, batch)
	for i := range idx {
		idx[i] = i
	}
	x := patchesOf(&data.Split{Images: images, N: batch}, idx, d.channels, size, d.patch)
	return d.tokensWith(d.params, d.set, x, batch*g*g)
}

// Vocab implements Tokenizer.
func (d *DVAE) Vocab() int { return d.cfg.Vocab }

// Info implements Tokenizer.
func (d *DVAE) Info() map[string]float64 { return d.info }

// Path implements Tokenizer.
func (d *DVAE) Path() string { return d.path }

// Close frees the tokenizer's parameters and compiled programs (engine memory the GC does not return).
func (d *DVAE) Close() {
	for _, p := range d.progs {
		p.Finalize()
	}
	d.progs = nil
	nn.Free(d.params...)
	d.params = nil
}
