package experiment

import (
	"context"
	"fmt"
	"math"
	"math/rand/v2"
	"slices"
	"strconv"
	"strings"

	"mimlab/data"
	"mimlab/nn"

	"github.com/gomlx/compute/dtypes"
	"github.com/gomlx/compute/shapes"
	. "github.com/gomlx/gomlx/core/graph"
	"github.com/gomlx/gomlx/core/tensors"
)

// FinetunePlan is what one fine-tuning run does, derived from [eval] and the labelled set's size.
type FinetunePlan struct {
	Labels, Batch, Steps, Warmup int
}

// PlanFinetune sizes a fine-tuning run on n labelled images: batches of finetune_batch (at most n), whole
// epochs of finetune_epochs but at least finetune_min_steps steps, warmup of finetune_warmup_epochs (at most
// half the steps).
func (t *Trial) PlanFinetune(n int) FinetunePlan {
	ec := t.Cfg.Eval
	b := min(ec.FTBatch, n)
	per := max(n/b, 1)
	steps := max(ec.FTEpochs*per, ec.FTMinSteps)
	warm := min(int(math.Round(ec.FTWarmupEpochs*float64(per))), steps/2)
	return FinetunePlan{Labels: n, Batch: b, Steps: steps, Warmup: warm}
}

// LabelledSubset picks n images of split, class-balanced (n/classes per class, the remainder to the first
// classes), in an order fixed by seed; n = 0 or n >= split.N gives the whole split.
func LabelledSubset(split *data.Split, classes, n int, seed uint64, imageLen int) (*data.Split, error) {
	if n == 0 || n >= split.N {
		return split, nil
	}
	if n < classes {
		return nil, fmt.Errorf("eval.finetune_labels = %d: fewer labels than the %d classes", n, classes)
	}
	quota := make([]int, classes)
	for c := range quota {
		quota[c] = n / classes
		if c < n%classes {
			quota[c]++
		}
	}
	want := slices.Clone(quota)
	perm := rand.New(rand.NewPCG(seed, 0x6c6162656c73)).Perm(split.N) // "labels"
	out := &data.Split{}
	for _, i := range perm {
		c := split.Labels[i]
		if c < 0 || c >= classes || quota[c] == 0 {
			continue
		}
		quota[c]--
		out.Images = append(out.Images, split.Images[i*imageLen:(i+1)*imageLen]...)
		out.Labels = append(out.Labels, c)
		out.N++
	}
	for c, q := range quota {
		if q > 0 {
			return nil, fmt.Errorf("eval.finetune_labels = %d: class %d has only %d training images", n, c, want[c]-q)
		}
	}
	return out, nil
}

// LayerID is BEiT's get_layer_id_for_vit for a parameter under "encoder." (or the head): the embeddings are
// layer 0, block i is layer i+1, the final norm and the head are layer depth+1.
func LayerID(name string, depth int) int {
	rest, ok := strings.CutPrefix(name, "encoder.")
	if !ok {
		return depth + 1
	}
	switch {
	case rest == "cls_token" || rest == "mask_token" || strings.HasPrefix(rest, "patch_embed."):
		return 0
	case strings.HasPrefix(rest, "blocks."):
		i, err := strconv.Atoi(strings.SplitN(strings.TrimPrefix(rest, "blocks."), ".", 2)[0])
		if err == nil {
			return i + 1
		}
	}
	return depth + 1
}

// finetuneLogits is the fine-tuning model: the encoder on every patch (drop path at the fine-tuning rate),
// pooled by feature, and a linear head.
func (t *Trial) finetuneLogits(s nn.Scope, images *Node, feature string) *Node {
	v := t.Model.ViT
	v.DropPath = t.Cfg.Eval.FTDropPath
	z := t.Model.Encoder.Encode(s.Sub("encoder"), v, nn.ViTInput{Patches: nn.Patchify(images, v.PatchSize)})
	b := z.Shape().Dimensions[0]
	var pooled *Node
	if feature == "mean" {
		pooled = ReduceMean(nn.GatherTokens(z, AddScalar(Iota(z.Graph(), shapes.Make(dtypes.Int64, b, v.NumPatches()), 1), 1)), 1)
	} else {
		pooled = Reshape(nn.GatherTokens(z, Zeros(z.Graph(), shapes.Make(dtypes.Int64, b, 1))), b, v.Dim)
	}
	// BEiT's head: trunc-normal 0.02 scaled by init_scale 0.001, zero bias.
	return nn.LinearInit(s.Sub("head"), pooled, t.Data.Classes, true, nn.Init{Kind: nn.InitTruncNormal, Std: 2e-5})
}

// Finetune trains the encoder (from params) and a linear head end to end on a class-balanced subset of
// `labels` training images (0 = all) and returns top-1 on the test split: AdamW with layer-wise lr decay,
// drop path, warmup then cosine, label smoothing, the [data] augmentation. alive is called every step.
func (t *Trial) Finetune(ctx context.Context, set *nn.ParamSet, params []*tensors.Tensor, feature string, labels int, alive func()) (float64, error) {
	ec := t.Cfg.Eval
	v := t.Model.ViT
	sub, err := LabelledSubset(&t.Data.Train, t.Data.Classes, labels, t.Cfg.Train.Seed, t.Data.ImageLen())
	if err != nil {
		return 0, err
	}
	plan := t.PlanFinetune(sub.N)
	loss := func(s nn.Scope, d []*Node) (*Node, []*Node) {
		logits := t.finetuneLogits(s, d[0], feature)
		return nn.SmoothedCrossEntropy(logits, d[1], ec.FTLabelSmoothing), []*Node{nn.Accuracy(logits, d[1])}
	}
	dataShapes := []shapes.Shape{shapes.Make(dtypes.Float32, plan.Batch, v.Channels, v.ImageSize, v.ImageSize), shapes.Make(dtypes.Int64, plan.Batch)}
	opt := nn.Optimizer{Beta1: 0.9, Beta2: 0.999, Eps: 1e-8, WeightDecay: ec.FTWeightDecay} // BEiT fine-tunes without clipping
	tr, err := nn.NewTrainer(t.env.Backend, dtypes.Float32, loss, dataShapes, opt, t.Cfg.Train.Seed+1)
	if err != nil {
		return 0, fmt.Errorf("fine-tuning model: %w", err)
	}
	defer tr.Finalize()
	// Start from the pretrained encoder: every encoder parameter is copied by name; only the head is new.
	from := map[string]int{}
	for i, p := range set.Params {
		from[p.Name] = i
	}
	tr.LRScale = make([]float64, len(tr.Set.Params))
	for i, p := range tr.Set.Params {
		tr.LRScale[i] = math.Pow(ec.FTLayerDecay, float64(v.Depth+1-LayerID(p.Name, v.Depth)))
		if !strings.HasPrefix(p.Name, "encoder.") {
			continue
		}
		j, ok := from[p.Name]
		if !ok {
			return 0, fmt.Errorf("fine-tuning: the pretrained model has no parameter %s", p.Name)
		}
		nn.Free(tr.Params[i])
		tr.Params[i] = nn.TensorOf(dtypes.Float32, append([]float32(nil), nn.Float32s(params[j])...), p.Dims...)
	}
	lc := t.loaderConfig(true)
	lc.BatchSize = plan.Batch
	lc.Seed = t.Cfg.Train.Seed + 1
	loader := data.NewLoader(t.Data, sub, lc, 0)
	defer loader.Close()
	sched := nn.Schedule{Base: ec.FTLR, Min: ec.FTMinLR, Warmup: plan.Warmup, Total: plan.Steps}
	for tr.Step < plan.Steps {
		if err := ctx.Err(); err != nil {
			return 0, err
		}
		b := loader.Next()
		if b.Err != nil {
			return 0, b.Err
		}
		img := tensors.FromFlatDataAndDimensions(b.Images, plan.Batch, v.Channels, v.ImageSize, v.ImageSize)
		lab := tensors.FromFlatDataAndDimensions(b.Labels, plan.Batch)
		_, _, _, err := tr.TrainStep(sched.At(tr.Step), img, lab)
		nn.Free(img, lab)
		if err != nil {
			return 0, fmt.Errorf("fine-tuning step %d: %w", tr.Step+1, err)
		}
		if alive != nil {
			alive()
		}
	}
	return t.finetuneAccuracy(tr, feature)
}

// finetuneAccuracy is the fine-tuned model's top-1 on the test split (no drop path, no augmentation).
func (t *Trial) finetuneAccuracy(tr *nn.Trainer, feature string) (float64, error) {
	v := t.Model.ViT
	bs := t.Cfg.Eval.Batch
	shp := []shapes.Shape{shapes.Make(dtypes.Float32, bs, v.Channels, v.ImageSize, v.ImageSize)}
	prog, err := nn.Compile(t.env.Backend, tr.Set, dtypes.Float32, false, shp, func(s nn.Scope, in []*Node) []*Node {
		return []*Node{ArgMax(t.finetuneLogits(s, in[0], feature), 1, dtypes.Int64)}
	})
	if err != nil {
		return 0, err
	}
	defer prog.Finalize()
	split := &t.Data.Test
	loader := data.NewLoader(t.Data, split, t.evalLoaderConfig(), 0)
	defer loader.Close()
	il := t.Data.ImageLen()
	correct := 0
	for done := 0; done < split.N; {
		b := loader.Next()
		if b.Err != nil {
			return 0, b.Err
		}
		n := len(b.Labels)
		img := b.Images
		if n < bs {
			img = append(img, make([]float32, (bs-n)*il)...)
		}
		in := tensors.FromFlatDataAndDimensions(img, bs, v.Channels, v.ImageSize, v.ImageSize)
		out, err := prog.Run(tr.Params, nil, in)
		nn.Free(in)
		if err != nil {
			return 0, err
		}
		pred := tensors.MustCopyFlatData[int64](out[0])
		for i := 0; i < n; i++ {
			if pred[i] == b.Labels[i] {
				correct++
			}
		}
		nn.Free(out...)
		done += n
	}
	return float64(correct) / float64(split.N), nil
}
