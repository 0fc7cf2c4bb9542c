package targets

import (
	. "github.com/gomlx/gomlx/core/graph"
	"mimlab/framework/registry"
	"mimlab/nn"
)

// PixelConfig is [targets] for name = "pixel".
type PixelConfig struct {
	Name      string `toml:"name"`
	Normalize bool   `toml:"normalize" doc:"per-patch mean/var normalisation (MAE's norm_pix_loss)"`
}

// Validate checks the section.
func (c *PixelConfig) Validate() error { return nil }

func init() {
	Registry.Register(registry.Entry[Factory]{
		Name: "pixel", Default: true, Doc: "each masked patch's pixels (normalize = true: per-patch normalised, MAE's norm_pix_loss), MSE",
		NewConfig: func() registry.Config { return &PixelConfig{Name: "pixel"} },
		Build:     func(c registry.Config) (Factory, error) { return pixelFactory{*c.(*PixelConfig)}, nil },
	})
}

// Pixel is the pixel target.
type Pixel struct {
	Normalize bool
	PatchDim  int
}

type pixelFactory struct{ c PixelConfig }

func (pixelFactory) Continuous() bool { return true }

func (f pixelFactory) Prepare(env Env) (Target, error) {
	return Pixel{Normalize: f.c.Normalize, PatchDim: env.Data.Channels * env.Patch * env.Patch}, nil
}

// Dim implements Target.
func (p Pixel) Dim() int { return p.PatchDim }

// MetricNames implements Target: none.
func (p Pixel) MetricNames() []string { return nil }

// Values are the masked patches' pixels [B,M,P], normalised per patch when asked.
func (p Pixel) Values(in Inputs) *Node {
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
func (p Pixel) Loss(pred *Node, in Inputs) (*Node, []*Node) {
	return nn.MSE(pred, StopGradient(p.Values(in))), nil
}
