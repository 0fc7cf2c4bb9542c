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
