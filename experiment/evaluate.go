package experiment

import (
	"context"
	"encoding/json"
	"fmt"
	"time"

	"github.com/gomlx/compute/dtypes"
	"github.com/gomlx/compute/shapes"
	. "github.com/gomlx/gomlx/core/graph"
	"github.com/gomlx/gomlx/core/tensors"
	"mimlab/data"
	"mimlab/eval"
	"mimlab/framework/runner"
	"mimlab/nn"
)

// Extract runs the frozen encoder over a split: it returns the pooled features (cls after the final
// LayerNorm, or the mean of patch tokens) and, when tokens is true, every output token. Batches are padded
// to one size so a single compiled graph serves the split.
func (t *Trial) Extract(set *nn.ParamSet, params []*tensors.Tensor, split *data.Split, tokens bool) (eval.Features, eval.Tokens, error) {
	v := t.Model.ViT
	bs := t.Cfg.Eval.Batch
	shp := []shapes.Shape{shapes.Make(dtypes.Float32, bs, v.Channels, v.ImageSize, v.ImageSize)}
	mean := t.Cfg.Eval.Feature == "mean"
	prog, err := nn.Compile(t.env.Backend, set, dtypes.Float32, false, shp, func(s nn.Scope, in []*Node) []*Node {
		z := t.Model.Features(s, in[0]) // [B,1+N,D]
		var pooled *Node
		if mean {
			pooled = ReduceMean(nn.GatherTokens(z, AddScalar(Iota(z.Graph(), shapes.Make(dtypes.Int64, bs, v.NumPatches()), 1), 1)), 1)
		} else {
			pooled = Reshape(nn.GatherTokens(z, Zeros(z.Graph(), shapes.Make(dtypes.Int64, bs, 1))), bs, v.Dim)
		}
		if tokens {
			return []*Node{pooled, z}
		}
		return []*Node{pooled}
	})
	if err != nil {
		return eval.Features{}, eval.Tokens{}, err
	}
	defer prog.Finalize()
	loader := data.NewLoader(t.Data, split, t.loaderConfig(false), 0)
	defer loader.Close()
	nt := v.NumPatches() + 1
	f := eval.Features{N: split.N, D: v.Dim, Labels: append([]int(nil), split.Labels...), X: make([]float32, 0, split.N*v.Dim)}
	var tk eval.Tokens
	if tokens {
		tk = eval.Tokens{N: split.N, T: nt, D: v.Dim, Labels: f.Labels, X: make([]float32, 0, split.N*nt*v.Dim)}
	}
	il := t.Data.ImageLen()
	for done := 0; done < split.N; {
		b := loader.Next()
		n := len(b.Labels)
		img := b.Images
		if n < bs {
			img = append(img, make([]float32, (bs-n)*il)...)
		}
		in := tensors.FromFlatDataAndDimensions(img, bs, v.Channels, v.ImageSize, v.ImageSize)
		out, err := prog.Run(params, nil, in)
		nn.Free(in)
		if err != nil {
			return f, tk, err
		}
		f.X = append(f.X, nn.Float32s(out[0])[:n*v.Dim]...)
		if tokens {
			tk.X = append(tk.X, nn.Float32s(out[1])[:n*nt*v.Dim]...)
		}
		nn.Free(out...)
		done += n
	}
	return f, tk, nil
}

// rawPixels are the images themselves as features (normalised as the loader does).
func (t *Trial) rawPixels(split *data.Split) eval.Features {
	loader := data.NewLoader(t.Data, split, t.loaderConfig(false), 0)
	defer loader.Close()
	il := t.Data.ImageLen()
	f := eval.Features{N: split.N, D: il, Labels: append([]int(nil), split.Labels...), X: make([]float32, 0, split.N*il)}
	for len(f.X) < split.N*il {
		f.X = append(f.X, loader.Next().Images...)
	}
	return f
}

// runProtocols evaluates features with every protocol asked for; report gets each top-1.
func (t *Trial) runProtocols(ctx context.Context, set *nn.ParamSet, params []*tensors.Tensor, protocols []string, report func(p string, acc float64) error) error {
	ec := t.Cfg.Eval
	needTokens := false
	for _, p := range protocols {
		needTokens = needTokens || p == "attentive"
	}
	ftr, ttr, err := t.Extract(set, params, &t.Data.Train, needTokens)
	if err != nil {
		return err
	}
	fte, tte, err := t.Extract(set, params, &t.Data.Test, needTokens)
	if err != nil {
		return err
	}
	for _, p := range protocols {
		if ctx.Err() != nil {
			return ctx.Err()
		}
		start := time.Now()
		var acc float64
		switch p {
		case "linear":
			acc, err = eval.Linear(ftr, fte, ec.LinearL2, ec.LinearMaxIter)
		case "knn":
			acc, err = eval.KNN(ftr, fte, ec.KNNK, ec.KNNTemperature)
		case "attentive":
			acc, err = eval.Attentive(t.env.Backend, ttr, tte, eval.AttentiveConfig{Heads: t.Model.ViT.Heads, Epochs: ec.AttEpochs, LR: ec.AttLR,
				Batch: ec.AttBatch, Optimizer: ec.AttOptimizer, WD: ec.AttWD, Seed: t.Cfg.Train.Seed})
		}
		if err != nil {
			return fmt.Errorf("eval %s: %w", p, err)
		}
		fmt.Fprintf(t.env.Log, "  %s: top-1 %.4f (%.1fs)\n", p, acc, time.Since(start).Seconds())
		if err := report(p, acc); err != nil {
			return err
		}
	}
	return nil
}

// BaselineKeys identify the reference rows a trial is read against: raw pixels of its data, and its encoder
// architecture at random initialisation on its data with its eval settings.
func (t *Trial) BaselineKeys() (raw, random string) {
	ev := *t.Cfg.Eval
	ev.Protocols, ev.Baselines = nil, false
	e, _ := json.Marshal(ev)
	a, _ := json.Marshal(struct {
		Enc  any
		Eval string
	}{t.Cfg.res.Sections["encoder"], string(e)})
	return "raw_pixels|" + DataKey(t.Cfg.Data) + "|" + string(e), "random_init|" + DataKey(t.Cfg.Data) + "|" + string(a)
}

// Evaluate runs the [eval] protocols on the trained encoder, and the reference rows once per key.
func (t *Trial) Evaluate(ctx context.Context, trialID int64, set *nn.ParamSet, params []*tensors.Tensor, rec runner.Recorder) error {
	ec := t.Cfg.Eval
	if len(ec.Protocols) == 0 {
		return nil
	}
	fmt.Fprintf(t.env.Log, "trial %d: evaluating the frozen encoder (%v)\n", trialID, ec.Protocols)
	if err := t.runProtocols(ctx, set, params, ec.Protocols, func(p string, acc float64) error { return rec.Eval(p, "top1", acc) }); err != nil {
		return err
	}
	if !ec.Baselines {
		return nil
	}
	s := rec.Store()
	rawKey, randKey := t.BaselineKeys()
	arch := fmt.Sprintf("vit d%d x%d h%d p%d", t.Model.ViT.Dim, t.Model.ViT.Depth, t.Model.ViT.Heads, t.Model.ViT.PatchSize)
	var rawTodo, randTodo []string
	for _, p := range ec.Protocols {
		if p != "attentive" {
			if _, ok, _ := s.Baseline(rawKey, p, "top1"); !ok {
				rawTodo = append(rawTodo, p)
			}
		}
		if _, ok, _ := s.Baseline(randKey, p, "top1"); !ok {
			randTodo = append(randTodo, p)
		}
	}
	if len(rawTodo) > 0 {
		fmt.Fprintf(t.env.Log, "reference: raw pixels (%v)\n", rawTodo)
		ftr, fte := t.rawPixels(&t.Data.Train), t.rawPixels(&t.Data.Test)
		for _, p := range rawTodo {
			var acc float64
			var err error
			if p == "linear" {
				acc, err = eval.Linear(ftr, fte, ec.LinearL2, ec.LinearMaxIter)
			} else {
				acc, err = eval.KNN(ftr, fte, ec.KNNK, ec.KNNTemperature)
			}
			if err != nil {
				return err
			}
			fmt.Fprintf(t.env.Log, "  raw pixels %s: top-1 %.4f\n", p, acc)
			if err := s.SetBaseline(rawKey, t.Cfg.Data.Name, "raw_pixels", p, "top1", acc); err != nil {
				return err
			}
		}
	}
	if len(randTodo) > 0 {
		fmt.Fprintf(t.env.Log, "reference: %s at random initialisation (%v)\n", arch, randTodo)
		rp := set.InitParams(dtypes.Float32, 0)
		defer nn.Free(rp...)
		if err := t.runProtocols(ctx, set, rp, randTodo, func(p string, acc float64) error {
			return s.SetBaseline(randKey, t.Cfg.Data.Name, arch+" random init", p, "top1", acc)
		}); err != nil {
			return err
		}
	}
	return nil
}

// LoadTrained returns the parameters of a finished (or interrupted) trial from its checkpoint.
func (t *Trial) LoadTrained() (*nn.ParamSet, []*tensors.Tensor, int, error) {
	tr, err := t.NewTrainer()
	if err != nil {
		return nil, nil, 0, err
	}
	ok, err := t.LoadCheckpoint(tr)
	if err != nil {
		return nil, nil, 0, err
	}
	if !ok {
		return nil, nil, 0, fmt.Errorf("trial has no checkpoint at %s (not run yet?)", t.checkpointPath())
	}
	nn.Free(tr.M...) // the optimiser state is not wanted; the caller frees the parameters (nn.Free)
	nn.Free(tr.V...)
	return tr.Set, tr.Params, tr.Step, nil
}
