package targets

import (
	"math"
	"slices"
	"strings"
	"testing"

	"github.com/gomlx/gomlx/core/tensors"
	"mimlab/nn"
	"mimlab/nn/nntest"
)

// The DALL-E encoder architecture and loader reproduce PyTorch's logits and tokens on a tiny-width encoder
// (testdata/gen_dalle.py), on every backend.
func TestDalleEncoderMatchesPyTorch(t *testing.T) {
	arrays, _, err := nn.LoadSafetensors("testdata/dalle_tiny.safetensors")
	if err != nil {
		t.Fatal(err)
	}
	arch, err := inferDalleArch(arrays)
	if err != nil {
		t.Fatal(err)
	}
	if arch != (DalleArch{NHid: 8, BlocksPerGroup: 1, Vocab: 16}) {
		t.Fatalf("inferred %+v", arch)
	}
	img := arrays["input.images"]
	wantLogits := arrays["expected.logits"].F32
	wantTok := arrays["expected.tokens"].I64
	for _, nb := range nntest.All(t) {
		t.Run(nb.Name, func(t *testing.T) {
			tok, err := NewDalleTokenizer(nb.Backend, arch, arrays, 3, 3)
			if err != nil {
				t.Fatal(err)
			}
			mapped := make([]float32, len(img.F32))
			for i, v := range img.F32 {
				mapped[i] = 0.8*v + 0.1
			}
			logits, err := tok.Logits(tensors.FromFlatDataAndDimensions(mapped, img.Shape...))
			if err != nil {
				t.Fatal(err)
			}
			worst := 0.0
			for i := range logits {
				worst = math.Max(worst, math.Abs(float64(logits[i]-wantLogits[i]))/math.Max(1, math.Abs(float64(wantLogits[i]))))
			}
			t.Logf("logits: worst relative error vs PyTorch %.2g", worst)
			if worst > 1e-4 {
				t.Fatalf("logits differ from PyTorch by %.3g", worst)
			}
			got, err := tok.Tokenize(slices.Clone(img.F32), 2)
			if err != nil {
				t.Fatal(err)
			}
			if !slices.Equal(got, wantTok) {
				t.Fatalf("tokens %v, PyTorch %v", got, wantTok)
			}
		})
	}
}

func TestDalleWithoutWeightsSaysWhereTheyComeFrom(t *testing.T) {
	c := &DalleConfig{Name: "dalle"}
	err := c.Validate()
	if err == nil {
		t.Fatal("no error")
	}
	for _, w := range []string{"targets.weights", "cdn.openai.com/dall-e/encoder.pkl", "convert_dalle.py"} {
		if !strings.Contains(err.Error(), w) {
			t.Errorf("error lacks %q: %v", w, err)
		}
	}
}

// A weights file whose shapes describe no DALL-E encoder, or a huge one, or that claims more values than it
// holds, is refused before a model is declared from it.
func TestDalleShapesBoundTheModel(t *testing.T) {
	good := func() map[string]nn.Array {
		f := func(shape ...int) nn.Array {
			a := nn.Array{Shape: shape}
			a.F32 = make([]float32, a.Size())
			return a
		}
		return map[string]nn.Array{
			"blocks.input.w": f(4, 3, 7, 7),
			"blocks.group_1.block_1.res_path.conv_1.w": f(1, 4, 3, 3),
			"blocks.output.conv.w":                     f(16, 32, 1, 1),
		}
	}
	cases := []struct {
		name string
		edit func(map[string]nn.Array)
		want string
	}{
		{"a small, well-formed encoder", func(map[string]nn.Array) {}, ""},
		{"a 0-byte [1e8, 0, 7, 7] input", func(a map[string]nn.Array) { a["blocks.input.w"] = nn.Array{Shape: []int{100000000, 0, 7, 7}} }, "blocks.input.w has shape [100000000 0 7 7]"},
		{"too wide", func(a map[string]nn.Array) { a["blocks.input.w"] = nn.Array{Shape: []int{100000, 3, 7, 7}} }, "n_hid in [1, 512]"},
		{"vocabulary too large", func(a map[string]nn.Array) { a["blocks.output.conv.w"] = nn.Array{Shape: []int{1 << 20, 32, 1, 1}} }, "vocab in [2, 65536]"},
		{"output of another width", func(a map[string]nn.Array) {
			a["blocks.output.conv.w"] = nn.Array{Shape: []int{16, 33, 1, 1}, F32: make([]float32, 16*33)}
		}, "8 n_hid = 32"},
		{"more values claimed than held", func(a map[string]nn.Array) {
			a["blocks.group_1.block_1.res_path.conv_1.w"] = nn.Array{Shape: []int{1, 4, 3, 3}}
		}, "holds 36 values, the file 0"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			a := good()
			c.edit(a)
			_, err := inferDalleArch(a)
			if (c.want == "") != (err == nil) || err != nil && !strings.Contains(err.Error(), c.want) {
				t.Fatalf("%v, want %q", err, c.want)
			}
		})
	}
}
