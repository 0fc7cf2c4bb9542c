// Package targets holds what a masked patch is asked to predict, named under [targets]: pixel (the patch's
// pixels, optionally normalised per patch as MAE's norm_pix_loss; MSE), dvae (one token per patch from a
// small VQ-VAE tokenizer trained here on the experiment's own data, cached by hash; cross-entropy) and dalle
// (the DALL-E dVAE encoder of the paper, with its released weights from a path; cross-entropy).
package targets

import (
	"fmt"
	"io"

	"github.com/gomlx/compute"
	. "github.com/gomlx/gomlx/core/graph"
	"mimlab/data"
	"mimlab/framework/registry"
	"mimlab/nn"
)

// Inputs are the graph nodes a target's loss reads.
type Inputs struct {
	Patches *Node // [B,N,C*p*p] every patch's pixels
	Masked  *Node // [B,M] int64 masked patch indices
	Tokens  *Node // [B,N] int64 token ids (discrete targets only)
}

// Target turns predictions for the masked patches into a loss.
type Target interface {
	// Dim is the size of a prediction per patch (pixels per patch, or the vocabulary).
	Dim() int
	// Loss compares pred [B,M,Dim] with the masked patches' targets; acc is token accuracy (nil for pixels).
	Loss(pred *Node, in Inputs) (loss, acc *Node)
	// Tokenizer is nil for pixel targets; else it turns image batches into one token per patch.
	Tokenizer() Tokenizer
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
}

// Factory prepares a target for an environment.
type Factory interface {
	Prepare(env Env) (Target, error)
}

// Config is the [targets] section.
type Config struct {
	Name      string `toml:"name"`
	Normalize bool   `toml:"normalize"` // pixel: per-patch mean/var normalisation (MAE's norm_pix_loss)
	// dvae
	Vocab   int     `toml:"vocab"`
	Hidden  int     `toml:"hidden"`
	CodeDim int     `toml:"code_dim"`
	Steps   int     `toml:"steps"`
	LR      float64 `toml:"lr"`
	Beta    float64 `toml:"beta"` // commitment weight
	Seed    uint64  `toml:"seed"`
	// dalle
	Weights string `toml:"weights"`
}

// Validate checks the section.
func (c *Config) Validate() error {
	switch c.Name {
	case "dvae":
		switch {
		case c.Vocab < 2 || c.Vocab > 65536:
			return fmt.Errorf("targets.vocab = %d: must be in [2, 65536]", c.Vocab)
		case c.Hidden < 1 || c.CodeDim < 1:
			return fmt.Errorf("targets.hidden = %d, targets.code_dim = %d: must be >= 1", c.Hidden, c.CodeDim)
		case c.Steps < 1:
			return fmt.Errorf("targets.steps = %d: must be >= 1", c.Steps)
		case c.LR <= 0:
			return fmt.Errorf("targets.lr = %v: must be > 0", c.LR)
		case c.Beta < 0:
			return fmt.Errorf("targets.beta = %v: must be >= 0", c.Beta)
		}
	case "dalle":
		if c.Weights == "" {
			return fmt.Errorf("targets.weights: dalle needs the released DALL-E dVAE encoder weights: download https://cdn.openai.com/dall-e/encoder.pkl " +
				"(or mmselfsup's state_dict dalle_encoder.pth), convert it with `python3 components/targets/convert_dalle.py encoder.pkl dalle_encoder.safetensors`, " +
				"and set targets.weights = \"dalle_encoder.safetensors\"")
		}
	}
	return nil
}

// Registry is the kind "targets".
var Registry = registry.NewKind[Factory]("targets", "mimlab/components/targets")

func init() {
	Registry.Register(registry.Entry[Factory]{
		Name: "pixel", Doc: "each masked patch's pixels (normalize = true: per-patch normalised, MAE's norm_pix_loss), MSE",
		NewConfig: func() registry.Config { return &Config{Name: "pixel"} },
		Build:     func(c registry.Config) (Factory, error) { return pixelFactory{*c.(*Config)}, nil },
	})
	Registry.Register(registry.Entry[Factory]{
		Name: "dvae", Doc: "tokens from a per-patch VQ-VAE trained on the experiment's own data (cached by hash), CE",
		NewConfig: func() registry.Config {
			return &Config{Name: "dvae", Vocab: 64, Hidden: 64, CodeDim: 16, Steps: 600, LR: 2e-3, Beta: 0.25}
		},
		Build: func(c registry.Config) (Factory, error) { return dvaeFactory{*c.(*Config)}, nil },
	})
	Registry.Register(registry.Entry[Factory]{
		Name: "dalle", Doc: "the DALL-E dVAE encoder (8,192 tokens) with its released weights from targets.weights, CE",
		NewConfig: func() registry.Config { return &Config{Name: "dalle"} },
		Build:     func(c registry.Config) (Factory, error) { return dalleFactory{*c.(*Config)}, nil },
	})
}

// Pixel is the pixel target.
type Pixel struct {
	Normalize bool
	PatchDim  int
}

type pixelFactory struct{ c Config }

func (f pixelFactory) Prepare(env Env) (Target, error) {
	return Pixel{Normalize: f.c.Normalize, PatchDim: env.Data.Channels * env.Patch * env.Patch}, nil
}

// Dim implements Target.
func (p Pixel) Dim() int { return p.PatchDim }

// Tokenizer implements Target.
func (p Pixel) Tokenizer() Tokenizer { return nil }

// Targets are the masked patches' pixels [B,M,P], normalised per patch when asked.
func (p Pixel) Targets(in Inputs) *Node {
	t := nn.GatherTokens(in.Patches, in.Masked)
	if p.Normalize {
		mean := ReduceAndKeep(t, ReduceMean, -1)
		c := Sub(t, mean)
		v := ReduceAndKeep(Square(c), ReduceMean, -1)
		t = Div(c, Sqrt(AddScalar(v, 1e-6)))
	}
	return t
}

// Loss implements Target: MSE over all predicted values.
func (p Pixel) Loss(pred *Node, in Inputs) (*Node, *Node) {
	return nn.MSE(pred, StopGradient(p.Targets(in))), nil
}

// tokenLoss is the discrete targets' CE and accuracy on the masked patches' tokens.
func tokenLoss(pred *Node, in Inputs) (*Node, *Node) {
	b, n := in.Tokens.Shape().Dimensions[0], in.Tokens.Shape().Dimensions[1]
	m := in.Masked.Shape().Dimensions[1]
	tok := Reshape(nn.GatherTokens(Reshape(ConvertDType(in.Tokens, pred.DType()), b, n, 1), in.Masked), b, m)
	labels := ConvertDType(tok, in.Tokens.DType())
	return nn.SoftmaxCrossEntropy(pred, labels), nn.Accuracy(pred, labels)
}
