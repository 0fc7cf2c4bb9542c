package data

import (
	"testing"
	"time"
)

// BenchmarkLoaderMNISTAugmented measures images/s of the loader on MNIST with random_resized_crop and
// hflip, batch 64, consuming batches as training would (through the background goroutine).
func BenchmarkLoaderMNISTAugmented(b *testing.B) {
	d, err := Load(defaults("mnist"))
	if err != nil {
		b.Fatal(err)
	}
	l := NewLoader(d, &d.Train, LoaderConfig{BatchSize: 64, Seed: 1, Shuffle: true, Augment: []string{"random_resized_crop", "hflip"},
		CropScale: [2]float64{0.6, 1}, Normalize: true, DropLast: true}, 0)
	defer l.Close()
	l.Next()
	b.ResetTimer()
	t0 := time.Now()
	for i := 0; i < b.N; i++ {
		l.Next()
	}
	b.ReportMetric(float64(b.N*64)/time.Since(t0).Seconds(), "images/s")
}
