package eval

import (
	"context"
	"fmt"
	"math"
	"runtime"
	"sync"

	"gonum.org/v1/gonum/blas"
	"gonum.org/v1/gonum/blas/blas32"
)

func l2normalize(f Features) []float32 {
	out := make([]float32, len(f.X))
	for i := 0; i < f.N; i++ {
		row := f.X[i*f.D : (i+1)*f.D]
		s := 0.0
		for _, v := range row {
			s += float64(v) * float64(v)
		}
		inv := float32(1 / math.Max(math.Sqrt(s), 1e-12))
		for j, v := range row {
			out[i*f.D+j] = v * inv
		}
	}
	return out
}

// KNN is DINO's weighted k-NN: cosine similarities, the k most similar train samples vote with weight
// exp(sim / temperature); top-1 on test.
func KNN(train, test Features, k int, temperature float64) (float64, error) {
	return KNNCtx(context.Background(), train, test, k, temperature)
}

// KNNCtx is KNN that stops between chunks of test samples when ctx is done, returning ctx's error.
func KNNCtx(ctx context.Context, train, test Features, k int, temperature float64) (float64, error) {
	if train.N == 0 || test.N == 0 || train.D != test.D {
		return 0, fmt.Errorf("knn: bad splits (%d x %d train, %d x %d test)", train.N, train.D, test.N, test.D)
	}
	if k > train.N {
		k = train.N
	}
	c := numClasses(train.Labels, test.Labels)
	tr, te := l2normalize(train), l2normalize(test)
	d := train.D
	const chunk = 128
	correct := make([]int, (test.N+chunk-1)/chunk)
	var wg sync.WaitGroup
	sem := make(chan struct{}, runtime.GOMAXPROCS(0))
	for ci, lo := 0, 0; lo < test.N; ci, lo = ci+1, lo+chunk {
		if ctx.Err() != nil {
			break
		}
		hi := min(lo+chunk, test.N)
		wg.Add(1)
		sem <- struct{}{}
		go func(ci, lo, hi int) {
			defer wg.Done()
			defer func() { <-sem }()
			m := hi - lo
			sims := make([]float32, m*train.N)
			blas32.Implementation().Sgemm(blas.NoTrans, blas.Trans, m, train.N, d, 1, te[lo*d:hi*d], d, tr, d, 0, sims, train.N)
			topS := make([]float32, k)
			topI := make([]int, k)
			votes := make([]float64, c)
			for q := 0; q < m; q++ {
				row := sims[q*train.N : (q+1)*train.N]
				n := 0
				for j, s := range row { // keep the k largest, smallest at the end
					if n < k {
						pos := n
						for pos > 0 && topS[pos-1] < s {
							topS[pos], topI[pos] = topS[pos-1], topI[pos-1]
							pos--
						}
						topS[pos], topI[pos] = s, j
						n++
					} else if s > topS[k-1] {
						pos := k - 1
						for pos > 0 && topS[pos-1] < s {
							topS[pos], topI[pos] = topS[pos-1], topI[pos-1]
							pos--
						}
						topS[pos], topI[pos] = s, j
					}
				}
				for i := range votes {
					votes[i] = 0
				}
				for i := 0; i < n; i++ {
					votes[train.Labels[topI[i]]] += math.Exp(float64(topS[i]) / temperature)
				}
				best := 0
				for i := range votes {
					if votes[i] > votes[best] {
						best = i
					}
				}
				if best == test.Labels[lo+q] {
					correct[ci]++
				}
			}
		}(ci, lo, hi)
	}
	wg.Wait()
	if ctx.Err() != nil {
		return 0, fmt.Errorf("knn: %w", context.Cause(ctx))
	}
	tot := 0
	for _, c := range correct {
		tot += c
	}
	return float64(tot) / float64(test.N), nil
}
