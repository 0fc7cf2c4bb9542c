package method

import (
	"fmt"

	"github.com/gomlx/compute/dtypes"
	"github.com/gomlx/compute/shapes"
	. "github.com/gomlx/gomlx/core/graph"
	"mimlab/framework/registry"
	"mimlab/nn"
)

// MoCo v3 (Chen, Xie and He 2021, "An Empirical Study of Training Self-Supervised Vision Transformers"), as
// its official code (facebookresearch/moco-v3, moco/builder.py) trains a ViT: two augmented views x1, x2 of
// each image (method.Needs.TwoViews); the query encoder (the [encoder] section, scope "encoder") gives each
// view's cls token after the final LayerNorm, a projector MLP (3 layers: Linear-BN-ReLU-Linear-BN-ReLU-
// Linear-BN without affine) and a predictor MLP (2 layers: Linear-BN-ReLU-Linear-BN without affine) map it
// to a query q; the momentum encoder and its projector (Scope.EMA copies "teacher" of "encoder" and
// "teacher_projector" of "projector", no predictor) map each view to a key k under StopGradient. The loss is
// symmetric, ctr(q1, k2) + ctr(q2, k1), ctr being InfoNCE over the batch at temperature tau scaled by 2·tau
// (nn.InfoNCE). The momentum goes from momentum to momentum_end along momentum_schedule (the paper's
// 0.99 -> 1, cosine). The representation is the cls token: eval.encoder = "teacher" or "both" reads the
// momentum encoder as well.
//
// Departures, all because of this engine or this scale: BN is nn.BatchNorm, batch statistics over the
// (single-device) batch with no running statistics - which is what BatchNorm1d computes in training, and
// the heads never run outside training - rather than SyncBN over all devices; the MLPs' Linear layers are
// xavier-initialised (PyTorch's default for them is kaiming-uniform); the patch projection is trained (the
// paper's stability trick of a frozen random patch projection is not reproduced); the momentum encoder moves
// after each optimiser step with that step's momentum (the official code moves it just before computing the
// keys of the next step, with the next step's: the same sequence of teachers, the schedule shifted by one
// step). The momentum encoder runs without drop path (every EMA copy does; the official ViT-MoCo sets drop
// path 0), the query encoder with encoder.drop_path. MoCo v3 uses no mask, no target, no regressor and no
// decoder: it declares those sections unused (spec.Uses), so they enter no identity and are refused beside
// method.name.

// MoCoV3Config is [method] for name = "mocov3".
type MoCoV3Config struct {
	Name        string  `toml:"name"`
	Temperature float64 `toml:"temperature" doc:"InfoNCE temperature tau (the loss is scaled by 2·tau)"`
	MLPDim      int     `toml:"mlp_dim" doc:"hidden width of the projector and predictor MLPs (the paper: 4096)"`
	ProjDim     int     `toml:"proj_dim" doc:"output width of the projector and predictor (the paper: 256)"`
	MomentumKeys
}

// Unused implements spec.Uses: MoCo v3 masks nothing, predicts no target and has no regressor or decoder;
// those sections enter none of its trials' identities and are refused beside method.name.
func (c *MoCoV3Config) Unused() []string {
	return []string{"masking", "targets", "regressor", "decoder"}
}

// Validate checks the section.
func (c *MoCoV3Config) Validate() error {
	switch {
	case !(c.Temperature > 0) || c.Temperature > 10:
		return fmt.Errorf("method.temperature = %v: must be in (0, 10] (the paper: 0.2)", c.Temperature)
	case c.MLPDim < 1 || c.MLPDim > 1<<16:
		return fmt.Errorf("method.mlp_dim = %d: must be in 1..65536", c.MLPDim)
	case c.ProjDim < 1 || c.ProjDim > 1<<16:
		return fmt.Errorf("method.proj_dim = %d: must be in 1..65536", c.ProjDim)
	}
	return c.MomentumKeys.Validate()
}

func init() {
	Registry.Register(registry.Entry[Method]{
		Name: "mocov3", Doc: "MoCo v3: two augmented views, query encoder + projector + predictor against a momentum (EMA) key encoder + projector, symmetric InfoNCE on the cls token",
		NewConfig: func() registry.Config {
			return &MoCoV3Config{Name: "mocov3", Temperature: 0.2, MLPDim: 4096, ProjDim: 256, MomentumKeys: MomentumKeys{Momentum: 0.99, MomentumEnd: 1, MomentumSchedule: "cosine"}}
		},
		Build: func(c registry.Config) (Method, error) { return MoCoV3{cfg: *c.(*MoCoV3Config)}, nil },
	})
}

// MoCoV3 is the method.
type MoCoV3 struct{ cfg MoCoV3Config }

// BatchCoupled implements BatchCoupled: accumulated micro-batches would take their negatives and BatchNorm
// statistics from the micro-batch.
func (MoCoV3) BatchCoupled() string {
	return "its InfoNCE takes the negatives, and its heads' BatchNorm the statistics, of the batch"
}

// TeacherPrefix implements Teacher: the momentum encoder.
func (MoCoV3) TeacherPrefix() string { return "teacher" }

// Needs implements Method: two views, nothing else.
func (MoCoV3) Needs() Needs { return Needs{TwoViews: true} }

// Check implements Method.
func (MoCoV3) Check(m *Model) error {
	if m.Regressor != nil {
		return fmt.Errorf("method.name = \"mocov3\": regressor.name must be \"none\" (MoCo v3 has no regressor)")
	}
	return nil
}

// MetricNames implements Method: the two halves of the symmetric loss, the mean cosine between each query
// and its positive key (view 1's query, view 2's key), and the spread of the unit keys over the batch (a
// collapsed key encoder has none).
func (MoCoV3) MetricNames(*Model) []string {
	return []string{"ctr_q1k2", "ctr_q2k1", "pos_cos", "key_std"}
}

// Loss implements Method.
func (mc MoCoV3) Loss(m *Model, s nn.Scope, in Inputs) (*Node, []*Node) {
	v := m.ViT
	tau := mc.cfg.Temperature
	mom := mc.cfg.Sched()
	query := func(view string, x *Node) *Node {
		z := m.Encoder.Encode(s.Sub("encoder").Branch(view), v, nn.ViTInput{Patches: nn.Patchify(x, v.PatchSize)})
		return mc.mlp(s.Sub("predictor").Branch(view), mc.mlp(s.Sub("projector").Branch(view), clsToken(z), 3), 2)
	}
	key := func(view string, x *Node) *Node {
		z := m.Encoder.Encode(s.EMA(mc.TeacherPrefix(), "encoder", mom).Branch(view), v, nn.ViTInput{Patches: nn.Patchify(x, v.PatchSize)})
		return StopGradient(mc.mlp(s.EMA("teacher_projector", "projector", mom).Branch(view), clsToken(z), 3))
	}
	q1, q2 := query("", in.Images), query("view2", in.Images2)
	k1, k2 := key("", in.Images), key("view2", in.Images2)
	l12, l21 := nn.InfoNCE(q1, k2, tau), nn.InfoNCE(q2, k1, tau)
	uk := nn.UnitRows(k2)
	pos := ReduceAllMean(ReduceSum(Mul(nn.UnitRows(q1), uk), 1))
	b := uk.Shape().Dimensions[0]
	return Add(l12, l21), []*Node{l12, l21, pos, batchStd(Reshape(uk, b, 1, mc.cfg.ProjDim))}
}

// mlp is the official _build_mlp: layers Linear layers without bias, each but the last followed by BN and
// ReLU, the last by BN without affine; hidden width mlp_dim, output proj_dim.
func (mc MoCoV3) mlp(s nn.Scope, x *Node, layers int) *Node {
	for l := 0; l < layers; l++ {
		out := mc.cfg.MLPDim
		if l == layers-1 {
			out = mc.cfg.ProjDim
		}
		x = nn.Linear(s.Subf("fc%d", l), x, out, false)
		if l < layers-1 {
			x = nn.BatchNorm(s.Subf("bn%d", l), x, true)
			x = Max(x, ZerosLike(x))
		} else {
			x = nn.BatchNorm(s, x, false)
		}
	}
	return x
}

// clsToken is the cls token of z [B, 1+N, D]: [B, D] (a gather: Slice has no gradient on ONNX Runtime).
func clsToken(z *Node) *Node {
	b, d := z.Shape().Dimensions[0], z.Shape().Dimensions[2]
	return Reshape(nn.GatherTokens(z, Zeros(z.Graph(), shapes.Make(dtypes.Int64, b, 1))), b, d)
}
