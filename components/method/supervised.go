package method

import (
	"fmt"

	"github.com/gomlx/compute/dtypes"
	"github.com/gomlx/compute/shapes"
	. "github.com/gomlx/gomlx/core/graph"
	"mimlab/framework/registry"
	"mimlab/nn"
)

// SupervisedConfig is [method] for name = "supervised": no keys of its own.
type SupervisedConfig struct {
	Name string `toml:"name"`
}

// Validate checks the section.
func (c *SupervisedConfig) Validate() error { return nil }

func init() {
	Registry.Register(registry.Entry[Method]{
		Name: "supervised", Doc: "a ViT trained with labels (linear head on the cls token; the comparator of Fig. 6)",
		NewConfig: func() registry.Config { return &SupervisedConfig{Name: "supervised"} },
		Build:     func(registry.Config) (Method, error) { return Supervised{}, nil },
	})
}

// Supervised is a ViT with a linear head on the cls token, trained with the labels.
type Supervised struct{}

// Needs implements Method: labels, no masks, no target.
func (Supervised) Needs() Needs { return Needs{Labels: true} }

// Check implements Method.
func (Supervised) Check(m *Model) error {
	if m.Classes < 2 {
		return fmt.Errorf("method.name = \"supervised\" needs a labelled dataset")
	}
	return nil
}

// MetricNames implements Method.
func (Supervised) MetricNames(*Model) []string { return []string{"train_acc"} }

// Loss implements Method.
func (Supervised) Loss(m *Model, s nn.Scope, in Inputs) (*Node, []*Node) {
	v := m.ViT
	z := m.Encoder.Encode(s.Sub("encoder"), v, nn.ViTInput{Patches: nn.Patchify(in.Images, v.PatchSize)})
	cls := Reshape(nn.GatherTokens(z, Zeros(z.Graph(), shapes.Make(dtypes.Int64, z.Shape().Dimensions[0], 1))), z.Shape().Dimensions[0], v.Dim)
	logits := nn.LinearInit(s.Sub("head"), cls, m.Classes, true, nn.Init{Kind: nn.InitTruncNormal, Std: 0.02})
	return nn.SoftmaxCrossEntropy(logits, in.Labels), []*Node{nn.Accuracy(logits, in.Labels)}
}
