package bench

import (
	"fmt"
	"io"
	"math/rand/v2"
	"os"
	"sort"
	"testing"
	"time"

	"github.com/gomlx/compute/dtypes"
	"github.com/gomlx/compute/shapes"
	. "github.com/gomlx/gomlx/core/graph"
	"github.com/gomlx/gomlx/core/tensors"
	"mimlab/nn"
)

// The block benchmark of reference/engine-evaluation.md: one pre-LN ViT block, batch 32, 49 tokens, dim 128,
// 4 heads, fp32; loss = MSE on all tokens + softmax CE of a linear head on 29 gathered tokens per image;
// AdamW. bench/block_torch.py is the same step in PyTorch.
const (
	blkB, blkN, blkD, blkH, blkK, blkV = 32, 49, 128, 4, 29, 64
)

func blockLoss(s nn.Scope, d []*Node) (*Node, []*Node) {
	x, target, idx, labels := d[0], d[1], d[2], d[3]
	out := nn.Block(s.Sub("block"), x, nn.BlockConfig{Heads: blkH, MLPRatio: 4, LayerScale: 0.1})
	logits := nn.Linear(s.Sub("head"), nn.GatherTokens(out, idx), blkV, true)
	return Add(nn.MSE(out, target), nn.SoftmaxCrossEntropy(logits, labels)), nil
}

func blockData(seed uint64) []*tensors.Tensor {
	r := rand.New(rand.NewPCG(seed, 0))
	x := make([]float32, blkB*blkN*blkD)
	tg := make([]float32, blkB*blkN*blkD)
	for i := range x {
		x[i], tg[i] = float32(r.NormFloat64()), float32(r.NormFloat64())
	}
	idx := make([]int64, 0, blkB*blkK)
	lab := make([]int64, 0, blkB*blkK)
	for b := 0; b < blkB; b++ {
		for _, j := range r.Perm(blkN)[:blkK] {
			idx = append(idx, int64(j))
			lab = append(lab, int64(r.IntN(blkV)))
		}
	}
	return []*tensors.Tensor{
		tensors.FromFlatDataAndDimensions(x, blkB, blkN, blkD), tensors.FromFlatDataAndDimensions(tg, blkB, blkN, blkD),
		tensors.FromFlatDataAndDimensions(idx, blkB, blkK), tensors.FromFlatDataAndDimensions(lab, blkB, blkK)}
}

// BenchmarkBlockStep reports the median ms of a full training step on the backend named by
// MIMLAB_BENCH_BACKEND (default ort).
func BenchmarkBlockStep(b *testing.B) {
	name := os.Getenv("MIMLAB_BENCH_BACKEND")
	if name == "" {
		name = "ort"
	}
	be, _, err := nn.NewBackend(name, io.Discard)
	if err != nil {
		b.Fatal(err)
	}
	data := blockData(1)
	var shp []shapes.Shape
	for _, d := range data {
		shp = append(shp, d.Shape())
	}
	tr, err := nn.NewTrainer(be, dtypes.Float32, blockLoss, shp, nn.DefaultAdamW(), 1)
	if err != nil {
		b.Fatal(err)
	}
	for i := 0; i < 3; i++ { // warm-up: compile + first runs
		if _, _, _, err := tr.TrainStep(1e-4, data...); err != nil {
			b.Fatal(err)
		}
	}
	var times []float64
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		t0 := time.Now()
		if _, _, _, err := tr.TrainStep(1e-4, data...); err != nil {
			b.Fatal(err)
		}
		times = append(times, float64(time.Since(t0).Microseconds())/1000)
	}
	sort.Float64s(times)
	med := times[len(times)/2]
	b.ReportMetric(med, "median-ms/step")
	if os.Getenv("MIMLAB_BENCH_PRINT") != "" {
		fmt.Printf("RESULT mimlab-%s block median_ms=%.2f steps=%d\n", name, med, len(times))
	}
}
