// Package targets holds what a masked patch is asked to predict, named under [targets]: pixel (the patch's
// pixels, optionally normalised per patch as MAE's norm_pix_loss; MSE), dvae (one token per patch from a
// small VQ-VAE tokenizer trained here on the experiment's own data, cached by hash; cross-entropy), dalle
// (the DALL-E dVAE encoder of the paper, with its released weights from a path; cross-entropy), and whatever
// else is registered. Each target is one file: its config, its registration, its Target.
//
// A target's loss is computed in the graph; what it needs from the host per batch (a tokenizer's tokens,
// hand-made features) it supplies through the optional HostInput interface, so the training step never
// asks which target it has.
package targets

import (
	"context"
	"io"

	"github.com/gomlx/compute"
	"github.com/gomlx/compute/shapes"
	. "github.com/gomlx/gomlx/core/graph"
	"github.com/gomlx/gomlx/core/tensors"
	"mimlab/data"
	"mimlab/framework/registry"
	"mimlab/nn"
)

// Inputs are the graph nodes a target's loss reads.
type Inputs struct {
	Patches *Node // [B,N,C*p*p] every patch's pixels
	Masked  *Node // [B,M] int64 masked patch indices
	Host    *Node // [B,N,...] what the target's HostInput computed for the batch (nil when it has none)
}

// Target turns predictions for the masked patches into a loss.
type Target interface {
	// Dim is the size of a prediction per patch (pixels per patch, the vocabulary, features per patch).
	Dim() int
	// Loss compares pred [B,M,Dim] with the masked patches' targets; metrics are named by MetricNames.
	Loss(pred *Node, in Inputs) (loss *Node, metrics []*Node)
	// MetricNames name the extra metrics Loss returns (token_acc, ...), none for most.
	MetricNames() []string
}

// HostInput is a target whose values are computed on the host from each batch's images (a tokenizer's
// tokens, hand-made features such as HOG); the training step feeds it as Inputs.Host.
type HostInput interface {
	// InputShape is the shape of the host input for a batch of b images with n patches each.
	InputShape(b, n int) shapes.Shape
	// Input computes it for images B x C x S x S (the loader's layout).
	Input(images []float32, batch int) (*tensors.Tensor, error)
}

// Regression is a target of continuous values per masked patch (pixels, features): Values are the
// [B,M,Dim] targets, for methods with a loss of their own (SimMIM's L1).
type Regression interface {
	Values(in Inputs) *Node
}

// Tokenized is a target that comes from a tokenizer (recorded with the trial: its info and file).
type Tokenized interface {
	Tokenizer() Tokenizer
}

// Closer is a target holding engine memory (a tokenizer's parameters and programs) to free after a trial.
type Closer interface {
	Close()
}

// Tokenizer maps a batch of images (B x C x S x S, the loader's layout) to B x N token ids.
type Tokenizer interface {
	Tokenize(images []float32, batch int) ([]int64, error)
	Vocab() int
	// Info describes the tokenizer (codebook usage, where it is stored) for the trial's record.
	Info() map[string]float64
	Path() string
}

// Env is what preparing a target may need: a backend to run or train a tokenizer, the dataset, a cache
// directory for tokenizers, a log for progress.
type Env struct {
	Backend  compute.Backend
	Data     *data.Dataset
	DataKey  string // canonical description of the dataset config (part of a tokenizer's cache key)
	Patch    int
	CacheDir string
	Log      io.Writer
	// Normalized says the loader standardises images (Data.Mean/Std): tokenizers that want [0,1] undo it.
	Normalized bool
	// Ctx, when set, ends long preparations (training a tokenizer) within a step of its cancellation
	// (Ctrl-C): Prepare then returns an error wrapping Ctx.Err().
	Ctx context.Context
}

// Err is the host's cancellation, nil while the preparation may go on.
func (e Env) Err() error {
	if e.Ctx == nil {
		return nil
	}
	return e.Ctx.Err()
}

// Factory prepares a target for an environment.
type Factory interface {
	Prepare(env Env) (Target, error)
	// Continuous says whether the targets are values (Regression) rather than tokens; it lets a method
	// check its combination at plan time, before any tokenizer is trained.
	Continuous() bool
}

// Registry is the kind "targets".
var Registry = registry.NewKind[Factory]("targets", "mimlab/components/targets")

// Standin is a target of the right kind and no data, for plan-time checks.
func Standin(f Factory, patchDim int) Target {
	if f.Continuous() {
		return Pixel{PatchDim: patchDim}
	}
	return tokenTarget{}
}

// tokenLoss is the discrete targets' CE and accuracy on the masked patches' tokens.
func tokenLoss(pred *Node, in Inputs) (*Node, []*Node) {
	b, n := in.Host.Shape().Dimensions[0], in.Host.Shape().Dimensions[1]
	m := in.Masked.Shape().Dimensions[1]
	tok := Reshape(nn.GatherTokens(Reshape(ConvertDType(in.Host, pred.DType()), b, n, 1), in.Masked), b, m)
	labels := ConvertDType(tok, in.Host.DType())
	return nn.SoftmaxCrossEntropy(pred, labels), []*Node{nn.Accuracy(pred, labels)}
}
