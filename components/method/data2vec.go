package method

import (
	"fmt"

	. "github.com/gomlx/gomlx/core/graph"
	"mimlab/framework/registry"
	"mimlab/nn"
)

// data2vec (Baevski et al. 2022), for images: the student encoder sees every patch with a learned mask
// token in the masked places (as BEiT); the teacher, the exponential moving average of the student, sees the
// unmasked image; the target of each masked patch is the average of the teacher's top K block outputs, each
// instance-normalised over the tokens (data2vec's instance_norm_target_layer), and a linear head on the
// student's masked tokens regresses it with an L2 loss (data2vec's loss_beta = 0). The teacher's momentum
// goes linearly from momentum to momentum_end (data2vec: 0.999 -> 0.9999). Block outputs are taken after the
// block's residual (data2vec takes the FFN output before its last residual).

// Data2VecConfig is [method] for name = "data2vec".
type Data2VecConfig struct {
	Name string `toml:"name"`
	TopK int    `toml:"top_k" doc:"the teacher's top blocks averaged into the target (0 = half of encoder.depth, rounded up: 6 of ViT-B's 12 as in the paper)"`
	MomentumKeys
}

// Unused implements spec.Uses: no targets (the teacher is the target) and no regressor; neither enters
// the identity of its trials, and setting them beside method.name is an error.
func (c *Data2VecConfig) Unused() []string { return []string{"targets", "regressor"} }

// Validate checks the section.
func (c *Data2VecConfig) Validate() error {
	if c.TopK < 0 {
		return fmt.Errorf("method.top_k = %d: must be >= 0 (0 = half of encoder.depth)", c.TopK)
	}
	return c.MomentumKeys.Validate()
}

func init() {
	Registry.Register(registry.Entry[Method]{
		Name: "data2vec", Doc: "data2vec: mask tokens in the student, regress the average of the EMA teacher's top-K instance-normalised block outputs",
		NewConfig: func() registry.Config {
			return &Data2VecConfig{Name: "data2vec", TopK: 0, MomentumKeys: MomentumKeys{Momentum: 0.999, MomentumEnd: 0.9999, MomentumSchedule: "linear"}}
		},
		Build: func(c registry.Config) (Method, error) { return Data2Vec{cfg: *c.(*Data2VecConfig)}, nil },
	})
}

// Data2Vec is the method.
type Data2Vec struct{ cfg Data2VecConfig }

// TeacherPrefix implements Teacher.
func (Data2Vec) TeacherPrefix() string { return "teacher" }

func (d Data2Vec) topK(m *Model) int {
	if d.cfg.TopK == 0 {
		return (m.ViT.Depth + 1) / 2
	}
	return d.cfg.TopK
}

// Needs implements Method.
func (Data2Vec) Needs() Needs { return Needs{Mask: true} }

// Check implements Method.
func (d Data2Vec) Check(m *Model) error {
	if m.Regressor != nil {
		return fmt.Errorf("method.name = \"data2vec\": regressor.name must be \"none\"")
	}
	if d.topK(m) > m.ViT.Depth {
		return fmt.Errorf("method.top_k = %d: must be <= encoder.depth = %d", d.cfg.TopK, m.ViT.Depth)
	}
	_, err := m.NeedLatentDecoder(true)
	return err
}

// MetricNames implements Method.
func (Data2Vec) MetricNames(*Model) []string { return []string{"latent_loss", "teacher_std"} }

// Loss implements Method.
func (d Data2Vec) Loss(m *Model, s nn.Scope, in Inputs) (*Node, []*Node) {
	v := m.ViT
	patches := nn.Patchify(in.Images, v.PatchSize)
	z := m.Encoder.Encode(s.Sub("encoder"), v, nn.ViTInput{Patches: patches, Mask: in.MaskF})
	dec, _ := m.NeedLatentDecoder(true)
	pred := dec.DecodeMasked(s.Sub("decoder"), nn.GatherTokens(z, AddScalar(in.Masked, 1)), nil, v.Heads, v.Dim)

	_, blocks := m.Encoder.EncodeBlocks(s.EMA(d.TeacherPrefix(), "encoder", d.cfg.Sched()), v, nn.ViTInput{Patches: patches})
	var target *Node
	k := d.topK(m)
	for _, b := range blocks[len(blocks)-k:] {
		t := nn.InstanceNorm(DropCls(b))
		if target == nil {
			target = t
		} else {
			target = Add(target, t)
		}
	}
	target = StopGradient(MulScalar(target, 1/float64(k)))
	y := nn.GatherTokens(target, in.Masked)
	loss := nn.MSE(pred, y)
	return loss, []*Node{loss, batchStd(y)}
}
