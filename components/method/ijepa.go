package method

import (
	"fmt"

	. "github.com/gomlx/gomlx/core/graph"
	"mimlab/framework/registry"
	"mimlab/nn"
)

// I-JEPA (Assran et al. 2023): a context encoder sees the visible context patches; a target encoder, the
// exponential moving average of the context encoder, sees the whole image; a predictor transformer over the
// context tokens and mask tokens at the target positions predicts the target encoder's representations of
// the target patches, normalised without affine (F.layer_norm), with an L2 loss. The target patches are the
// masked patches: block masking draws several blocks, I-JEPA's several target blocks (its separate context
// block sampling is not reproduced: the context is every patch outside the targets). The predictor is
// decoder.name = "mae" (visible tokens and mask tokens at every place, predicting the masked ones) at the
// encoder's width, not I-JEPA's narrower one. The teacher is what I-JEPA evaluates (eval.encoder).

// IJEPAConfig is [method] for name = "ijepa".
type IJEPAConfig struct {
	Name string `toml:"name"`
	MomentumKeys
}

// Unused implements spec.Uses: no targets (the teacher is the target) and no regressor; neither enters
// the identity of its trials, and setting them beside method.name is an error.
func (c *IJEPAConfig) Unused() []string { return []string{"targets", "regressor"} }

// Validate checks the section.
func (c *IJEPAConfig) Validate() error { return c.MomentumKeys.Validate() }

func init() {
	Registry.Register(registry.Entry[Method]{
		Name: "ijepa", Doc: "I-JEPA: context encoder on the visible patches, predictor, EMA target encoder on the whole image, L2 on normalised target features",
		NewConfig: func() registry.Config {
			return &IJEPAConfig{Name: "ijepa", MomentumKeys: MomentumKeys{Momentum: 0.996, MomentumEnd: 1, MomentumSchedule: "linear"}}
		},
		Build: func(c registry.Config) (Method, error) { return IJEPA{cfg: *c.(*IJEPAConfig)}, nil },
	})
}

// IJEPA is the method.
type IJEPA struct{ cfg IJEPAConfig }

// TeacherPrefix implements Teacher.
func (IJEPA) TeacherPrefix() string { return "teacher" }

// Needs implements Method: masks only (the targets are the teacher's representations).
func (IJEPA) Needs() Needs { return Needs{Mask: true} }

// Check implements Method.
func (IJEPA) Check(m *Model) error {
	if m.Regressor != nil {
		return fmt.Errorf("method.name = \"ijepa\": regressor.name must be \"none\" (the predictor is the decoder)")
	}
	_, err := m.NeedFullDecoder()
	return err
}

// MetricNames implements Method: the latent loss and the spread of the teacher's normalised targets over
// the batch (a collapsed teacher has none).
func (IJEPA) MetricNames(*Model) []string { return []string{"latent_loss", "teacher_std"} }

// Loss implements Method.
func (j IJEPA) Loss(m *Model, s nn.Scope, in Inputs) (*Node, []*Node) {
	v := m.ViT
	patches := nn.Patchify(in.Images, v.PatchSize)
	z := m.Encoder.Encode(s.Sub("encoder"), v, nn.ViTInput{Patches: patches, Keep: in.Visible})
	dec, _ := m.NeedFullDecoder() // Check made sure
	pred := dec.DecodeFull(s.Sub("decoder"), z, in.Visible, in.MaskF, in.Masked, nn.PosTable(s, v.Grid(), v.Dim), v.Heads, v.Dim)
	teacher := m.Encoder.Encode(s.EMA(j.TeacherPrefix(), "encoder", j.cfg.Sched()), v, nn.ViTInput{Patches: patches})
	h := StopGradient(nn.Normalize(nn.GatherTokens(teacher, AddScalar(in.Masked, 1)))) // +1: skip cls
	loss := nn.MSE(pred, h)
	return loss, []*Node{loss, batchStd(h)}
}

// batchStd is the standard deviation over the batch of x [B, K, D], averaged over tokens and channels.
func batchStd(x *Node) *Node {
	mean := ExpandAxes(ReduceMean(x, 0), 0)
	return ReduceAllMean(Sqrt(AddScalar(ReduceMean(Square(Sub(x, mean)), 0), 1e-12)))
}
