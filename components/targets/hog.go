package targets

import (
	"fmt"

	"github.com/gomlx/compute/dtypes"
	"github.com/gomlx/compute/shapes"
	. "github.com/gomlx/gomlx/core/graph"
	"github.com/gomlx/gomlx/core/tensors"
	"mimlab/framework/registry"
	"mimlab/nn"
)

// HOGConfig is [targets] for name = "hog": MaskFeat's (Wei et al. 2022) histograms of oriented gradients of
// each masked patch, computed on the host from the batch's images (hogfeat.go, checked against
// scikit-image), MSE as in MaskFeat.
type HOGConfig struct {
	Name string `toml:"name"`
	Bins int    `toml:"bins" doc:"orientation bins over 0-180 degrees (MaskFeat: 9)"`
	Cell int    `toml:"cell" doc:"cell side in pixels, must divide data.patch_size; 0 = patch_size/2 (MaskFeat: 8-pixel cells on 16-pixel patches)"`
}

// Validate checks the section.
func (c *HOGConfig) Validate() error {
	switch {
	case c.Bins < 1 || c.Bins > 360:
		return fmt.Errorf("targets.bins = %d: must be in [1, 360]", c.Bins)
	case c.Cell < 0 || c.Cell > 4096:
		return fmt.Errorf("targets.cell = %d: must be in [0, 4096] (0 = data.patch_size/2)", c.Cell)
	}
	return nil
}

func init() {
	Registry.Register(registry.Entry[Factory]{
		Name: "hog", Doc: "MaskFeat's HOG of each masked patch (unsigned orientations, L2-normalised per patch), MSE",
		NewConfig: func() registry.Config { return &HOGConfig{Name: "hog", Bins: 9} },
		Build:     func(c registry.Config) (Factory, error) { return hogFactory{*c.(*HOGConfig)}, nil },
	})
}

type hogFactory struct{ c HOGConfig }

func (hogFactory) Continuous() bool { return true }

func (f hogFactory) Prepare(env Env) (Target, error) {
	p := HOGParams{Cell: f.c.Cell, Bins: f.c.Bins}
	if p.Cell == 0 {
		p.Cell = max(env.Patch/2, 1)
	}
	if env.Patch%p.Cell != 0 {
		return nil, fmt.Errorf("targets.cell = %d: must divide data.patch_size = %d", p.Cell, env.Patch)
	}
	p.BlockCells = env.Patch / p.Cell
	return &HOG{p: p, channels: env.Data.Channels, size: env.Data.Size, patch: env.Patch, dim: p.BlockCells * p.BlockCells * p.Bins}, nil
}

// HOG is the hog target: one L2-normalised histogram vector per patch.
type HOG struct {
	p                          HOGParams
	channels, size, patch, dim int
}

// Dim implements Target: (patch/cell)^2 cells x bins per patch.
func (h *HOG) Dim() int { return h.dim }

// MetricNames implements Target: none.
func (h *HOG) MetricNames() []string { return nil }

// InputShape implements HostInput: [B, N, Dim] float32.
func (h *HOG) InputShape(b, n int) shapes.Shape { return shapes.Make(dtypes.Float32, b, n, h.dim) }

// Input implements HostInput: the HOG of every patch of every image. It is invariant to the loader's
// per-channel standardisation (a shift and a positive scale), so it needs no undoing.
func (h *HOG) Input(images []float32, batch int) (*tensors.Tensor, error) {
	f, err := HOGPatches(images, batch, h.channels, h.size, h.patch, h.p)
	if err != nil {
		return nil, fmt.Errorf("hog targets: %w", err)
	}
	n := (h.size / h.patch) * (h.size / h.patch)
	return tensors.FromFlatDataAndDimensions(f, batch, n, h.dim), nil
}

// Values implements Regression: the masked patches' HOG vectors [B,M,Dim].
func (h *HOG) Values(in Inputs) *Node { return nn.GatherTokens(in.Host, in.Masked) }

// Loss implements Target: MSE over the masked patches' HOG vectors.
func (h *HOG) Loss(pred *Node, in Inputs) (*Node, []*Node) {
	return nn.MSE(pred, StopGradient(h.Values(in))), nil
}
