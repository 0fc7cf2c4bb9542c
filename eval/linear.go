package eval

import (
	"context"
	"fmt"
	"math"
	"runtime"
	"slices"
	"sync"

	"gonum.org/v1/gonum/floats"
	"gonum.org/v1/gonum/optimize"
)

// Linear fits a softmax classifier on standardised train features by L-BFGS and returns test top-1.
func Linear(train, test Features, l2 float64, maxIter int) (float64, error) {
	fit, err := LinearProbe(train, test, l2, maxIter)
	return fit.Top1, err
}

// LinearFit is a linear probe's result and how its optimisation ended.
type LinearFit struct {
	Top1       float64
	Iterations int     // L-BFGS major iterations
	GradNorm   float64 // the infinity norm of the objective's gradient where it stopped
	// Converged says L-BFGS stopped on its convergence criteria (gradient norm under 1e-6, or the loss no
	// longer changing), not at the iteration limit or on a failure: an unconverged probe's accuracy may
	// still move with more iterations.
	Converged bool
	// Failure is why L-BFGS stopped early without converging (its line search made no progress, say); ""
	// when it converged or reached the limit.
	Failure string
	Status  string // gonum's optimize.Status
}

// Outcome is the fit's ending as one number (evals metric lbfgs_converged): 1 converged, 0 stopped at the
// iteration limit, -1 stopped by a failure.
func (f LinearFit) Outcome() float64 {
	switch {
	case f.Converged:
		return 1
	case f.Failure != "":
		return -1
	}
	return 0
}

// LinearProbe is Linear with the optimiser's account of the fit.
func LinearProbe(train, test Features, l2 float64, maxIter int) (LinearFit, error) {
	return LinearProbeCtx(context.Background(), train, test, l2, maxIter)
}

// cancelled is a gonum Recorder that stops the optimisation once ctx is done (Ctrl-C, a lost lease).
type cancelled struct{ ctx context.Context }

func (c cancelled) Init() error { return nil }
func (c cancelled) Record(*optimize.Location, optimize.Operation, *optimize.Stats) error {
	return c.ctx.Err()
}

// LinearProbeCtx is LinearProbe that stops within an iteration when ctx is done, returning ctx's error.
func LinearProbeCtx(ctx context.Context, train, test Features, l2 float64, maxIter int) (LinearFit, error) {
	if train.N == 0 || test.N == 0 {
		return LinearFit{}, fmt.Errorf("linear probe: empty split (%d train, %d test)", train.N, test.N)
	}
	tr, te := Standardize(train, test)
	c := numClasses(train.Labels, test.Labels)
	d := tr.D
	x := make([]float64, len(tr.X))
	for i, v := range tr.X {
		x[i] = float64(v)
	}
	obj := newSoftmaxObjective(x, tr.Labels, tr.N, d, c, l2)
	prob := optimize.Problem{
		Func: obj.loss,
		Grad: obj.grad,
	}
	p0 := make([]float64, c*d+c)
	res, err := optimize.Minimize(prob, p0, &optimize.Settings{MajorIterations: maxIter, GradientThreshold: 1e-6, Recorder: cancelled{ctx}}, &optimize.LBFGS{})
	if ctx.Err() != nil {
		return LinearFit{}, fmt.Errorf("linear probe: %w", context.Cause(ctx))
	}
	if err != nil && res == nil {
		return LinearFit{}, fmt.Errorf("linear probe: %w", err)
	}
	fit := LinearFit{Iterations: res.MajorIterations, Status: res.Status.String(), Converged: res.Status != optimize.IterationLimit && err == nil}
	if err != nil {
		if res.MajorIterations <= 1 { // nothing fitted: the features are not usable (NaN, infinite)
			return LinearFit{}, fmt.Errorf("linear probe: L-BFGS failed at its start: %w", err)
		}
		fit.Failure = err.Error()
	}
	if res.Gradient != nil {
		fit.GradNorm = floats.Norm(res.Gradient, math.Inf(1))
	}
	p := res.X
	correct := 0
	for i := 0; i < te.N; i++ {
		best, bk := math.Inf(-1), 0
		for k := 0; k < c; k++ {
			s := p[c*d+k]
			for j := 0; j < d; j++ {
				s += p[k*d+j] * float64(te.X[i*d+j])
			}
			if s > best {
				best, bk = s, k
			}
		}
		if bk == te.Labels[i] {
			correct++
		}
	}
	fit.Top1 = float64(correct) / float64(te.N)
	return fit, nil
}

// softmaxObjective is the mean cross-entropy of a softmax classifier (params: W [c,d] then b [c]) plus
// 0.5*l2*|W|^2, with its gradient. gonum's L-BFGS asks for the loss and then the gradient at the same point;
// both come from one pass over the data and the second call reuses it. The pass is split into a fixed
// number of chunks of rows, run on up to GOMAXPROCS goroutines and summed in chunk order, so the result does
// not depend on the machine's core count.
type softmaxObjective struct {
	x           []float64
	labels      []int
	n, d, c     int
	l2          float64
	at          []float64 // the point of the cached loss and gradient
	cachedLoss  float64
	cachedGrad  []float64
	chunkLoss   []float64
	chunkGrad   [][]float64
	chunkLogits [][]float64
	workers     int
}

// linearChunks is how many row chunks the objective sums: fixed, so the summation order is the same on
// every machine.
const linearChunks = 8

func newSoftmaxObjective(x []float64, labels []int, n, d, c int, l2 float64) *softmaxObjective {
	o := &softmaxObjective{x: x, labels: labels, n: n, d: d, c: c, l2: l2, cachedGrad: make([]float64, c*d+c),
		chunkLoss: make([]float64, linearChunks), workers: min(runtime.GOMAXPROCS(0), linearChunks)}
	for range linearChunks {
		o.chunkGrad = append(o.chunkGrad, make([]float64, c*d+c))
		o.chunkLogits = append(o.chunkLogits, make([]float64, c))
	}
	return o
}

func (o *softmaxObjective) loss(p []float64) float64 {
	o.eval(p)
	return o.cachedLoss
}

func (o *softmaxObjective) grad(g, p []float64) {
	o.eval(p)
	copy(g, o.cachedGrad)
}

func (o *softmaxObjective) eval(p []float64) {
	if o.at != nil && slices.Equal(o.at, p) {
		return
	}
	work := make(chan int)
	var wg sync.WaitGroup
	for range o.workers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for k := range work {
				o.chunk(k, p)
			}
		}()
	}
	for k := range linearChunks {
		work <- k
	}
	close(work)
	wg.Wait()
	c, d := o.c, o.d
	loss := 0.0
	g := o.cachedGrad
	clear(g)
	for k := range linearChunks {
		loss += o.chunkLoss[k]
		floats.Add(g, o.chunkGrad[k])
	}
	n := float64(o.n)
	loss /= n
	floats.Scale(1/n, g)
	w := p[:c*d]
	loss += 0.5 * o.l2 * floats.Dot(w, w)
	floats.AddScaled(g[:c*d], o.l2, w)
	o.cachedLoss = loss
	o.at = append(o.at[:0], p...)
}

// chunk sums the loss and gradient of rows [k*n/chunks, (k+1)*n/chunks).
func (o *softmaxObjective) chunk(k int, p []float64) {
	c, d := o.c, o.d
	grad, logits := o.chunkGrad[k], o.chunkLogits[k]
	clear(grad)
	loss := 0.0
	for i := k * o.n / linearChunks; i < (k+1)*o.n/linearChunks; i++ {
		row := o.x[i*d : (i+1)*d]
		mx := math.Inf(-1)
		for j := 0; j < c; j++ {
			logits[j] = p[c*d+j] + floats.Dot(p[j*d:(j+1)*d], row)
			mx = math.Max(mx, logits[j])
		}
		z := 0.0
		for j := range logits {
			logits[j] = math.Exp(logits[j] - mx)
			z += logits[j]
		}
		y := o.labels[i]
		loss -= math.Log(logits[y]/z + 1e-300)
		for j := 0; j < c; j++ {
			gj := logits[j] / z
			if j == y {
				gj--
			}
			floats.AddScaled(grad[j*d:(j+1)*d], gj, row)
			grad[c*d+j] += gj
		}
	}
	o.chunkLoss[k] = loss
}
