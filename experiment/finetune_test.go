package experiment

import (
	"fmt"
	"testing"

	"mimlab/data"
	"mimlab/eval"
)

func TestLabelledSubsetIsClassBalancedAndSeeded(t *testing.T) {
	// 3 classes, 30 images of 2 pixels each; image i holds (i, label).
	split := &data.Split{N: 30}
	for i := 0; i < 30; i++ {
		split.Labels = append(split.Labels, i%3)
		split.Images = append(split.Images, float32(i), float32(i%3))
	}
	cases := []struct {
		n    int
		want []int // per class
	}{{3, []int{1, 1, 1}}, {10, []int{4, 3, 3}}, {29, []int{10, 10, 9}}}
	for _, c := range cases {
		a, err := LabelledSubset(split, 3, c.n, 7, 2)
		if err != nil {
			t.Fatal(err)
		}
		b, _ := LabelledSubset(split, 3, c.n, 7, 2)
		other, _ := LabelledSubset(split, 3, c.n, 8, 2)
		per := make([]int, 3)
		same, differs := true, false
		for i := 0; i < a.N; i++ {
			per[a.Labels[i]]++
			if a.Images[2*i+1] != float32(a.Labels[i]) {
				t.Fatalf("n=%d: image %d carries label %v, its row says %d", c.n, i, a.Images[2*i+1], a.Labels[i])
			}
			same = same && a.Images[2*i] == b.Images[2*i]
			differs = differs || a.Images[2*i] != other.Images[2*i]
		}
		if a.N != c.n || fmt.Sprint(per) != fmt.Sprint(c.want) {
			t.Errorf("n=%d: %d images, per class %v, want %v", c.n, a.N, per, c.want)
		}
		if !same {
			t.Errorf("n=%d: the same seed picked different images", c.n)
		}
		if c.n < 29 && !differs {
			t.Errorf("n=%d: another seed picked the same images", c.n)
		}
	}
	if all, _ := LabelledSubset(split, 3, 0, 7, 2); all != split {
		t.Error("0 labels should be the whole split")
	}
	if _, err := LabelledSubset(split, 3, 2, 7, 2); err == nil {
		t.Error("fewer labels than classes should be an error")
	}
	short := &data.Split{N: 4, Labels: []int{0, 0, 0, 1}, Images: make([]float32, 8)}
	if _, err := LabelledSubset(short, 2, 4-1, 7, 2); err != nil {
		t.Errorf("3 of 4 with classes 2+1 available: %v", err)
	}
	if _, err := LabelledSubset(&data.Split{N: 5, Labels: []int{0, 0, 0, 0, 1}, Images: make([]float32, 10)}, 2, 4, 7, 2); err == nil {
		t.Error("a class with too few images should be an error")
	}
}

// Layer ids follow BEiT's get_layer_id_for_vit, so the layer-wise lr scale is decay^(depth+1-id).
func TestLayerID(t *testing.T) {
	cases := []struct {
		name string
		want int
	}{
		{"encoder.cls_token", 0}, {"encoder.mask_token", 0}, {"encoder.patch_embed.proj.weight", 0},
		{"encoder.blocks.0.attn.q.weight", 1}, {"encoder.blocks.3.mlp.fc2.bias", 4}, {"encoder.blocks.11.norm1.weight", 12},
		{"encoder.norm.weight", 13}, {"head.weight", 13}, {"head.bias", 13},
	}
	for _, c := range cases {
		if got := LayerID(c.name, 12); got != c.want {
			t.Errorf("LayerID(%s) = %d, want %d", c.name, got, c.want)
		}
	}
}

func TestPlanFinetune(t *testing.T) {
	ec := eval.DefaultConfig()
	ec.FTEpochs, ec.FTMinSteps, ec.FTBatch, ec.FTWarmupEpochs = 20, 300, 64, 3
	tr := &Trial{Cfg: Configs{Eval: ec}}
	cases := []struct {
		n    int
		want FinetunePlan
	}{
		{100, FinetunePlan{Labels: 100, Batch: 64, Steps: 300, Warmup: 3}},    // 1 batch an epoch: the floor
		{1000, FinetunePlan{Labels: 1000, Batch: 64, Steps: 300, Warmup: 45}}, // 15 an epoch x 20
		{10000, FinetunePlan{Labels: 10000, Batch: 64, Steps: 3120, Warmup: 468}},
		{40, FinetunePlan{Labels: 40, Batch: 40, Steps: 300, Warmup: 3}}, // batch at most the labelled set
	}
	for _, c := range cases {
		if got := tr.PlanFinetune(c.n); got != c.want {
			t.Errorf("n=%d: %+v, want %+v", c.n, got, c.want)
		}
	}
}
