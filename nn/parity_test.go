package nn

import (
	"encoding/json"
	"math"
	"strings"
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

// Exporting to timm names (fused qkv) and loading back gives the same parameters; the names are timm's.
func TestTimmNamesRoundTrip(t *testing.T) {
	c := tinyViT()
	shp := []shapes.Shape{shapes.Make(dtypes.Float32, 2, 1, 12, 12), shapes.Make(dtypes.Int64, 2, 5)}
	ps, err := Declare(goBackend(t), dtypes.Float32, true, shp, func(s Scope, d []*Node) []*Node {
		return []*Node{ViT(s.Sub("encoder"), c, ViTInput{Patches: Patchify(d[0], c.PatchSize), Keep: d[1]})}
	})
	if err != nil {
		t.Fatal(err)
	}
	params := ps.InitParams(dtypes.Float32, 5)
	arr := ToArrays(ps, params, "encoder.")
	for _, name := range []string{"patch_embed.proj.weight", "cls_token", "blocks.0.attn.qkv.weight", "blocks.1.attn.q_bias",
		"blocks.1.attn.v_bias", "blocks.0.gamma_1", "blocks.0.mlp.fc2.bias", "norm.weight"} {
		if _, ok := arr[name]; !ok {
			t.Errorf("export lacks %s", name)
		}
	}
	if _, ok := arr["blocks.0.attn.q.weight"]; ok {
		t.Error("export kept the unfused q weight")
	}
	if s := arr["blocks.0.attn.qkv.weight"].Shape; s[0] != 3*c.Dim || s[1] != c.Dim {
		t.Errorf("qkv shape %v", s)
	}
	back := ps.InitParams(dtypes.Float32, 99)
	if err := FromArrays(ps, arr, "encoder.", back); err != nil {
		t.Fatal(err)
	}
	for i := range params {
		a, b := Float32s(params[i]), Float32s(back[i])
		for j := range a {
			if a[j] != b[j] {
				t.Fatalf("%s differs after the round trip", ps.Params[i].Name)
			}
		}
	}
	delete(arr, "norm.bias")
	if err := FromArrays(ps, arr, "encoder.", back); err == nil || !strings.Contains(err.Error(), "norm.bias") {
		t.Fatalf("missing parameter not reported: %v", err)
	}
}
