package eval

import (
	"fmt"
	"math"

	"gonum.org/v1/gonum/optimize"
)

// Linear fits a softmax classifier on standardised train features by L-BFGS and returns test top-1.
func Linear(train, test Features, l2 float64, maxIter int) (float64, error) {
	if train.N == 0 || test.N == 0 {
		return 0, fmt.Errorf("linear probe: empty split (%d train, %d test)", train.N, test.N)
	}
	tr, te := Standardize(train, test)
	c := numClasses(train.Labels, test.Labels)
	d := tr.D
	x := make([]float64, len(tr.X))
	for i, v := range tr.X {
		x[i] = float64(v)
	}
	// params: W [c,d] then b [c]
	fg := func(grad, p []float64) float64 {
		for i := range grad {
			grad[i] = 0
		}
		loss := 0.0
		logits := make([]float64, c)
		for i := 0; i < tr.N; i++ {
			row := x[i*d : (i+1)*d]
			mx := math.Inf(-1)
			for k := 0; k < c; k++ {
				s := p[c*d+k]
				w := p[k*d : (k+1)*d]
				for j, v := range row {
					s += w[j] * v
				}
				logits[k] = s
				mx = math.Max(mx, s)
			}
			z := 0.0
			for k := range logits {
				logits[k] = math.Exp(logits[k] - mx)
				z += logits[k]
			}
			y := tr.Labels[i]
			loss -= math.Log(logits[y]/z + 1e-300)
			if grad != nil {
				for k := 0; k < c; k++ {
					g := logits[k] / z
					if k == y {
						g--
					}
					gw := grad[k*d : (k+1)*d]
					for j, v := range row {
						gw[j] += g * v
					}
					grad[c*d+k] += g
				}
			}
		}
		n := float64(tr.N)
		loss /= n
		reg := 0.0
		for i := 0; i < c*d; i++ {
			reg += p[i] * p[i]
		}
		loss += 0.5 * l2 * reg
		if grad != nil {
			for i := range grad {
				grad[i] /= n
			}
			for i := 0; i < c*d; i++ {
				grad[i] += l2 * p[i]
			}
		}
		return loss
	}
	prob := optimize.Problem{
		Func: func(p []float64) float64 { return fg(nil, p) },
		Grad: func(g, p []float64) { fg(g, p) },
	}
	p0 := make([]float64, c*d+c)
	res, err := optimize.Minimize(prob, p0, &optimize.Settings{MajorIterations: maxIter, GradientThreshold: 1e-6}, &optimize.LBFGS{})
	if err != nil && res == nil {
		return 0, fmt.Errorf("linear probe: %w", err)
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
	return float64(correct) / float64(te.N), nil
}
