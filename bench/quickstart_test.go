package bench

import (
	"fmt"
	"io"
	"os"
	"runtime"
	"sort"
	"strings"
	"syscall"
	"testing"
	"time"

	"mimlab/data"
	"mimlab/experiment"
	"mimlab/framework/spec"
	"mimlab/framework/sweep"
	"mimlab/nn"
)

// BenchmarkQuickstartStep times a full training step (forward, backward, clipping, AdamW) of the
// quickstart's CAE and BEiT models (experiments/quickstart.toml) on MIMLAB_BENCH_BACKEND (default ort):
// the median over b.N steps after warm-up, on a fixed batch ("step"), and with the loader, masks and
// host-side preparation included ("step+data"). bench/cae_torch.py is the same step in PyTorch.
// MIMLAB_BENCH_SET="train.precision=bf16" times the bf16 step (bench/gpu.sh stage 6).
func BenchmarkQuickstartStep(b *testing.B) {
	name := os.Getenv("MIMLAB_BENCH_BACKEND")
	if name == "" {
		name = "ort"
	}
	be, resolved, err := nn.NewBackend(name, io.Discard)
	if err != nil {
		b.Fatal(err)
	}
	var sets []string // MIMLAB_BENCH_SET="encoder.dim=128;data.image_size=56" resizes the model (scaling table)
	if v := os.Getenv("MIMLAB_BENCH_SET"); v != "" {
		sets = strings.Split(v, ";")
	}
	raw, err := spec.Load("../experiments/quickstart.toml", sets)
	if err != nil {
		b.Fatal(err)
	}
	trials, err := sweep.Expand(raw, experiment.Sections())
	if err != nil {
		b.Fatal(err)
	}
	env := experiment.NewEnv(be, resolved, b.TempDir(), io.Discard)
	for _, tr := range trials {
		method := experiment.Impl(tr.Resolved, "method")
		b.Run(method, func(b *testing.B) {
			if b.N == 1 && os.Getenv("MIMLAB_BENCH_PRINT") != "" {
				// The testing package always calls a benchmark once with N=1 before the N of -benchtime
				// Nx; under bench/quickstart.sh that probe would build a second trainer in the same process
				// (twice the compile time, and its memory in the peak RSS reported for the real run).
				return
			}
			env.AddSpec(tr.Hash, tr.Resolved)
			phase("start")
			t, err := env.Prepare(tr.Hash)
			if err != nil {
				b.Fatal(err)
			}
			phase("data loaded")
			trn, err := t.NewTrainer()
			if err != nil {
				b.Fatal(err)
			}
			defer trn.Finalize()
			bs := t.Cfg.Data.BatchSize
			l := data.NewLoader(t.Data, &t.Data.Train, data.LoaderConfig{BatchSize: bs, Seed: 1, Shuffle: true, DropLast: true,
				Augment: t.Cfg.Data.Augment, CropScale: [2]float64{0.7, 1}, Normalize: t.Cfg.Data.Normalize}, 0)
			defer l.Close()
			fixed, err := t.StepInputs(l.Next())
			if err != nil {
				b.Fatal(err)
			}
			for i := 0; i < 3; i++ {
				if _, _, _, err := trn.TrainStep(1e-4, fixed...); err != nil {
					b.Fatal(err)
				}
				if i == 0 {
					phase("first step (graph compiled)")
				}
			}
			phase("warm-up done")
			defer phase("timed steps done")
			var step, full []float64
			b.ResetTimer()
			for i := 0; i < b.N; i++ {
				t0 := time.Now()
				if _, _, _, err := trn.TrainStep(1e-4, fixed...); err != nil {
					b.Fatal(err)
				}
				step = append(step, ms2(time.Since(t0)))
				t0 = time.Now()
				in, err := t.StepInputs(l.Next())
				if err != nil {
					b.Fatal(err)
				}
				if _, _, _, err := trn.TrainStep(1e-4, in...); err != nil {
					b.Fatal(err)
				}
				full = append(full, ms2(time.Since(t0)))
			}
			var ru syscall.Rusage
			syscall.Getrusage(syscall.RUSAGE_SELF, &ru)
			sort.Float64s(step)
			sort.Float64s(full)
			b.ReportMetric(step[len(step)/2], "median-ms/step")
			if os.Getenv("MIMLAB_BENCH_PRINT") != "" {
				fmt.Printf("RESULT mimlab-%s-%s median_ms=%.2f images_per_s=%.0f with_data_ms=%.2f batch=%d dim=%d tokens=%d peak_rss_mb=%.0f precision=%s\n", resolved, method,
					step[len(step)/2], float64(bs)/step[len(step)/2]*1000, full[len(full)/2], bs, t.Model.ViT.Dim, t.Model.ViT.NumPatches(), float64(ru.Maxrss)/1024, t.Cfg.Train.Precision)
			}
		})
	}
}

func ms2(d time.Duration) float64 { return float64(d.Microseconds()) / 1000 }

// phase prints the process's resident and peak resident memory (/proc/self/status) when
// MIMLAB_BENCH_PHASES is set: where in a step benchmark the memory goes (BENCHMARKS.md, issue 18).
func phase(name string) {
	if os.Getenv("MIMLAB_BENCH_PHASES") == "" {
		return
	}
	st, err := os.ReadFile("/proc/self/status")
	if err != nil {
		return
	}
	var rss, hwm string
	for _, line := range strings.Split(string(st), "\n") {
		f := strings.Fields(line)
		if len(f) >= 2 && f[0] == "VmRSS:" {
			rss = f[1]
		}
		if len(f) >= 2 && f[0] == "VmHWM:" {
			hwm = f[1]
		}
	}
	kb := func(s string) float64 { var v float64; fmt.Sscan(s, &v); return v / 1024 }
	var ms runtime.MemStats
	runtime.ReadMemStats(&ms)
	mb := func(b uint64) float64 { return float64(b) / (1 << 20) }
	// go_heap: live Go objects; go_held: what Go's heap holds from the OS beyond them (freed but not yet
	// returned); the rest of rss is ONNX Runtime, its arena and the binaries.
	fmt.Printf("PHASE %-28s rss_mb=%.0f peak_mb=%.0f go_heap_mb=%.0f go_held_mb=%.0f\n", name, kb(rss), kb(hwm),
		mb(ms.HeapAlloc), mb(ms.HeapSys-ms.HeapReleased-ms.HeapAlloc))
}
