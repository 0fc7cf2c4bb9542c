package bench

import (
	"fmt"
	"os"
	"testing"
	"time"

	"mimlab/analysis/tsne"
	"mimlab/framework/npy"
)

// BenchmarkTSNE embeds the 2,000 x 128 input bench/tsne_sklearn.py wrote (MIMLAB_TSNE_INPUT) with
// mimlab's Barnes-Hut t-SNE (scikit-learn's defaults) and prints the time and the trustworthiness (k = 5).
func BenchmarkTSNE(b *testing.B) {
	path := os.Getenv("MIMLAB_TSNE_INPUT")
	if path == "" {
		b.Skip("set MIMLAB_TSNE_INPUT (bench/tsne.sh does)")
	}
	x32, shape, err := npy.ReadFloat32(path)
	if err != nil {
		b.Fatal(err)
	}
	n, d := shape[0], shape[1]
	x := make([]float64, len(x32))
	for i, v := range x32 {
		x[i] = float64(v)
	}
	for i := 0; i < b.N; i++ {
		t0 := time.Now()
		y, err := tsne.Embed(x, n, d, tsne.Default())
		if err != nil {
			b.Fatal(err)
		}
		sec := time.Since(t0).Seconds()
		tw := tsne.Trustworthiness(x, d, y, 2, n, 5)
		fmt.Printf("RESULT mimlab-tsne seconds=%.2f trustworthiness=%.4f n=%d d=%d\n", sec, tw, n, d)
	}
}
