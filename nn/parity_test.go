package nn

import (
	"encoding/json"
	"math"
	"testing"

	"github.com/gomlx/compute/dtypes"
	"github.com/gomlx/compute/shapes"
	. "github.com/gomlx/gomlx/core/graph"
	"github.com/gomlx/gomlx/core/tensors"
)

// TestPyTorchParity loads testdata/parity.safetensors (weights, inputs and outputs of a 2-block ViT encoder
// and one regressor block computed by PyTorch: testdata/gen_parity.py) and checks that mimlab's blocks,
// loaded through the timm names, reproduce the outputs within 1e-4 relative error, on every backend.
func TestPyTorchParity(t *testing.T) {
	arrays, meta, err := LoadSafetensors("testdata/parity.safetensors")
	if err != nil {
		t.Fatal(err)
	}
	var cfg struct{ B, C, IMG, P, D, H, DEPTH, RATIO, K, M, Nv int }
	if err := json.Unmarshal([]byte(meta["config"]), &cfg); err != nil {
		t.Fatal(err)
	}
	vit := ViTConfig{ImageSize: cfg.IMG, PatchSize: cfg.P, Channels: cfg.C, Dim: cfg.D, Depth: cfg.DEPTH, Heads: cfg.H,
		MLPRatio: float64(cfg.RATIO), LayerScale: 0.1}
	f32 := func(name string) *tensors.Tensor {
		a, ok := arrays[name]
		if !ok {
			t.Fatalf("fixture lacks %s", name)
		}
		return tensors.FromFlatDataAndDimensions(append([]float32(nil), a.F32...), a.Shape...)
	}
	i64 := func(name string) *tensors.Tensor {
		a := arrays[name]
		return tensors.FromFlatDataAndDimensions(append([]int64(nil), a.I64...), a.Shape...)
	}
	cases := []struct {
		name     string
		prefix   string
		expected string
		inputs   []string
		build    BuildFn
	}{
		{"encoder", "encoder.", "expected.encoder", []string{"input.images", "input.keep"}, func(s Scope, d []*Node) []*Node {
			return []*Node{ViT(s.Sub("encoder"), vit, ViTInput{Patches: Patchify(d[0], vit.PatchSize), Keep: d[1]})}
		}},
		{"regressor_block", "regressor.", "expected.regressor", []string{"input.xq", "input.xv", "input.posq", "input.posv"}, func(s Scope, d []*Node) []*Node {
			return []*Node{RegressorBlock(s.Sub("regressor"), d[0], d[1], d[2], d[3], BlockConfig{Heads: vit.Heads, MLPRatio: vit.MLPRatio, LayerScale: 0.1})}
		}},
	}
	for _, nb := range allBackends(t) {
		for _, tc := range cases {
			t.Run(nb.name+"/"+tc.name, func(t *testing.T) {
				var data []*tensors.Tensor
				var shp []shapes.Shape
				for _, in := range tc.inputs {
					var x *tensors.Tensor
					if arrays[in].I64 != nil {
						x = i64(in)
					} else {
						x = f32(in)
					}
					data = append(data, x)
					shp = append(shp, x.Shape())
				}
				ps, err := Declare(nb.be, dtypes.Float32, false, shp, tc.build)
				if err != nil {
					t.Fatal(err)
				}
				params := ps.InitParams(dtypes.Float32, 0)
				sub := map[string]Array{}
				for k, v := range arrays {
					if len(k) > len(tc.prefix) && k[:len(tc.prefix)] == tc.prefix {
						sub[k] = v
					}
				}
				// The fixture's names carry the prefix; FromArrays matches full names here.
				if err := FromArrays(ps, sub, "", params); err != nil {
					t.Fatal(err)
				}
				prog, err := Compile(nb.be, ps, dtypes.Float32, false, shp, tc.build)
				if err != nil {
					t.Fatal(err)
				}
				out, err := prog.Run(params, nil, data...)
				if err != nil {
					t.Fatal(err)
				}
				got := Float32s(out[0])
				want := arrays[tc.expected].F32
				if len(got) != len(want) {
					t.Fatalf("output has %d values, PyTorch %d", len(got), len(want))
				}
				worst := 0.0
				for i := range got {
					d := math.Abs(float64(got[i]-want[i])) / math.Max(1, math.Abs(float64(want[i])))
					worst = math.Max(worst, d)
				}
				t.Logf("%d values, worst relative error vs PyTorch %.2g", len(got), worst)
				if worst > 1e-4 {
					t.Fatalf("mimlab differs from PyTorch: worst relative error %.3g > 1e-4", worst)
				}
			})
		}
	}
}
