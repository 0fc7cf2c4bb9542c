// Package tsne embeds high-dimensional points in 2-D with t-SNE (van der Maaten 2008): exact t-SNE for
// small inputs and Barnes-Hut t-SNE (van der Maaten 2014) with a quadtree, perplexity-calibrated
// affinities, PCA initialisation, early exaggeration, momentum and gains, seeded. Its defaults follow
// scikit-learn's TSNE (perplexity 30, early exaggeration 12 for 250 iterations, learning rate
// max(N / 12 / 4, 50), 1,000 iterations, theta 0.5), so results can be read against it.
package tsne

import (
	"context"
	"fmt"
	"math"
	"math/rand/v2"
	"sort"

	"gonum.org/v1/gonum/mat"
	"gonum.org/v1/gonum/stat"
)

// Config configures an embedding.
type Config struct {
	Perplexity        float64
	Theta             float64 // Barnes-Hut accuracy; 0 = exact t-SNE
	Iterations        int
	EarlyExaggeration float64
	ExaggerationIters int
	LearningRate      float64 // 0 = auto: max(N / EarlyExaggeration / 4, 50)
	Seed              uint64
	PCAInit           bool
}

// Default is scikit-learn's configuration with Barnes-Hut.
func Default() Config {
	return Config{Perplexity: 30, Theta: 0.5, Iterations: 1000, EarlyExaggeration: 12, ExaggerationIters: 250, PCAInit: true}
}

// Embed maps n points of dimension d (x is n*d, row-major) to n*2 coordinates.
func Embed(x []float64, n, d int, c Config) ([]float64, error) {
	return EmbedCtx(context.Background(), x, n, d, c)
}

// EmbedCtx is Embed that stops within an iteration of ctx's cancellation (an error wrapping ctx.Err()).
func EmbedCtx(ctx context.Context, x []float64, n, d int, c Config) ([]float64, error) {
	if n < 4 || len(x) != n*d {
		return nil, fmt.Errorf("tsne: need at least 4 points of dimension %d (got %d values for %d points)", d, len(x), n)
	}
	if c.Perplexity <= 0 || c.Perplexity*3 >= float64(n) {
		c.Perplexity = math.Max(1, math.Min(c.Perplexity, float64(n-1)/3))
	}
	var p sparse
	if c.Theta <= 0 {
		p = affinities(x, n, d, n-1, c.Perplexity)
	} else {
		p = affinities(x, n, d, min(n-1, int(3*c.Perplexity)), c.Perplexity)
	}
	y := initY(x, n, d, c)
	lr := c.LearningRate
	if lr <= 0 {
		lr = math.Max(float64(n)/c.EarlyExaggeration/4, 50)
	}
	grad := make([]float64, 2*n)
	upd := make([]float64, 2*n)
	gains := make([]float64, 2*n)
	for i := range gains {
		gains[i] = 1
	}
	for it := 0; it < c.Iterations; it++ {
		if err := ctx.Err(); err != nil {
			return nil, fmt.Errorf("t-SNE: stopped at iteration %d/%d: %w", it, c.Iterations, err)
		}
		exag, mom := 1.0, 0.8
		if it < c.ExaggerationIters {
			exag, mom = c.EarlyExaggeration, 0.5
		}
		if c.Theta <= 0 {
			exactGradient(p, y, n, exag, grad)
		} else {
			bhGradient(p, y, n, exag, c.Theta, grad)
		}
		for i := range y {
			if (grad[i] > 0) != (upd[i] > 0) {
				gains[i] += 0.2
			} else {
				gains[i] *= 0.8
			}
			gains[i] = math.Max(gains[i], 0.01)
			upd[i] = mom*upd[i] - lr*gains[i]*grad[i]
			y[i] += upd[i]
		}
	}
	return y, nil
}

// sparse holds symmetric P as rows of (column, value).
type sparse struct {
	cols [][]int
	vals [][]float64
}

// affinities calibrates each point's Gaussian to the perplexity over its k nearest neighbours and returns
// the symmetrised joint P (sums to 1).
func affinities(x []float64, n, d, k int, perplexity float64) sparse {
	cond := sparse{cols: make([][]int, n), vals: make([][]float64, n)}
	target := math.Log(perplexity)
	dist := make([]float64, n)
	idx := make([]int, n)
	for i := 0; i < n; i++ {
		xi := x[i*d : (i+1)*d]
		for j := 0; j < n; j++ {
			s := 0.0
			xj := x[j*d : (j+1)*d]
			for t, v := range xi {
				e := v - xj[t]
				s += e * e
			}
			dist[j] = s
			idx[j] = j
		}
		dist[i] = math.Inf(1)
		sort.Slice(idx, func(a, b int) bool { return dist[idx[a]] < dist[idx[b]] })
		nb := append([]int(nil), idx[:k]...)
		nd := make([]float64, k)
		for t, j := range nb {
			nd[t] = dist[j]
		}
		// Binary search on beta = 1/(2 sigma^2) for entropy log(perplexity).
		beta, lo, hi := 1.0, 0.0, math.Inf(1)
		pv := make([]float64, k)
		for iter := 0; iter < 100; iter++ {
			sum, h := 0.0, 0.0
			for t := range nd {
				pv[t] = math.Exp(-(nd[t] - nd[0]) * beta)
				sum += pv[t]
			}
			for t := range nd {
				pv[t] /= sum
				if pv[t] > 1e-300 {
					h -= pv[t] * math.Log(pv[t])
				}
			}
			if math.Abs(h-target) < 1e-5 {
				break
			}
			if h > target {
				lo = beta
				if math.IsInf(hi, 1) {
					beta *= 2
				} else {
					beta = (beta + hi) / 2
				}
			} else {
				hi = beta
				beta = (beta + lo) / 2
			}
		}
		cond.cols[i], cond.vals[i] = nb, append([]float64(nil), pv...)
	}
	// Symmetrise: P_ij = (p_j|i + p_i|j) / 2n.
	m := make([]map[int]float64, n)
	for i := range m {
		m[i] = map[int]float64{}
	}
	for i := 0; i < n; i++ {
		for t, j := range cond.cols[i] {
			v := cond.vals[i][t] / float64(2*n)
			m[i][j] += v
			m[j][i] += v
		}
	}
	out := sparse{cols: make([][]int, n), vals: make([][]float64, n)}
	for i := 0; i < n; i++ {
		for j := range m[i] {
			out.cols[i] = append(out.cols[i], j)
		}
		sort.Ints(out.cols[i])
		for _, j := range out.cols[i] {
			out.vals[i] = append(out.vals[i], m[i][j])
		}
	}
	return out
}

func initY(x []float64, n, d int, c Config) []float64 {
	y := make([]float64, 2*n)
	r := rand.New(rand.NewPCG(c.Seed, 0x74736e65))
	if c.PCAInit && d >= 2 {
		var pc stat.PC
		if pc.PrincipalComponents(mat.NewDense(n, d, x), nil) {
			var vec mat.Dense
			pc.VectorsTo(&vec)
			var proj mat.Dense
			proj.Mul(mat.NewDense(n, d, x), vec.Slice(0, d, 0, 2))
			sd := stat.StdDev(mat.Col(nil, 0, &proj), nil)
			for i := 0; i < n; i++ {
				y[2*i] = proj.At(i, 0) / sd * 1e-4
				y[2*i+1] = proj.At(i, 1) / sd * 1e-4
			}
			return y
		}
	}
	for i := range y {
		y[i] = 1e-4 * r.NormFloat64()
	}
	return y
}

// exactGradient is the O(n^2) t-SNE gradient.
func exactGradient(p sparse, y []float64, n int, exag float64, grad []float64) {
	w := make([]float64, n*n)
	z := 0.0
	for i := 0; i < n; i++ {
		for j := i + 1; j < n; j++ {
			dx, dy := y[2*i]-y[2*j], y[2*i+1]-y[2*j+1]
			v := 1 / (1 + dx*dx + dy*dy)
			w[i*n+j], w[j*n+i] = v, v
			z += 2 * v
		}
	}
	for i := range grad {
		grad[i] = 0
	}
	for i := 0; i < n; i++ {
		for j := 0; j < n; j++ {
			if i == j {
				continue
			}
			v := w[i*n+j]
			f := -v * v / z
			grad[2*i] += 4 * f * (y[2*i] - y[2*j])
			grad[2*i+1] += 4 * f * (y[2*i+1] - y[2*j+1])
		}
		for t, j := range p.cols[i] {
			v := w[i*n+j]
			a := 4 * exag * p.vals[i][t] * v
			grad[2*i] += a * (y[2*i] - y[2*j])
			grad[2*i+1] += a * (y[2*i+1] - y[2*j+1])
		}
	}
}

// quadtree for Barnes-Hut.
type node struct {
	cx, cy, half float64 // cell centre and half width
	mx, my       float64 // centre of mass
	count        int
	point        int // leaf holding one point: its index; -1 otherwise
	children     [4]*node
	leaf         bool
}

func newNode(cx, cy, half float64) *node {
	return &node{cx: cx, cy: cy, half: half, point: -1, leaf: true}
}

func (q *node) insert(i int, y []float64, depth int) {
	px, py := y[2*i], y[2*i+1]
	q.mx = (q.mx*float64(q.count) + px) / float64(q.count+1)
	q.my = (q.my*float64(q.count) + py) / float64(q.count+1)
	q.count++
	if q.leaf && q.count == 1 {
		q.point = i
		return
	}
	if q.leaf {
		if depth > 50 { // coincident points: keep them in this leaf
			return
		}
		q.leaf = false
		old := q.point
		q.point = -1
		if old >= 0 {
			q.child(y[2*old], y[2*old+1]).insert(old, y, depth+1)
		}
	}
	q.child(px, py).insert(i, y, depth+1)
}

func (q *node) child(px, py float64) *node {
	k := 0
	if px >= q.cx {
		k |= 1
	}
	if py >= q.cy {
		k |= 2
	}
	if q.children[k] == nil {
		h := q.half / 2
		cx, cy := q.cx-h, q.cy-h
		if k&1 != 0 {
			cx = q.cx + h
		}
		if k&2 != 0 {
			cy = q.cy + h
		}
		q.children[k] = newNode(cx, cy, h)
	}
	return q.children[k]
}

// repulse accumulates, for point i, sum w^2 (y_i - y_j) and sum w over the tree.
func (q *node) repulse(i int, px, py, theta float64, fx, fy, z *float64) {
	if q == nil || q.count == 0 || (q.leaf && q.point == i && q.count == 1) {
		return
	}
	dx, dy := px-q.mx, py-q.my
	d2 := dx*dx + dy*dy
	if q.leaf || (2*q.half)*(2*q.half) < theta*theta*d2 {
		cnt := float64(q.count)
		if q.leaf && q.point == i { // coincident points sharing i's leaf
			cnt--
		}
		w := 1 / (1 + d2)
		*z += cnt * w
		*fx += cnt * w * w * dx
		*fy += cnt * w * w * dy
		return
	}
	for _, c := range q.children {
		c.repulse(i, px, py, theta, fx, fy, z)
	}
}

func bhGradient(p sparse, y []float64, n int, exag, theta float64, grad []float64) {
	minX, maxX, minY, maxY := math.Inf(1), math.Inf(-1), math.Inf(1), math.Inf(-1)
	for i := 0; i < n; i++ {
		minX, maxX = math.Min(minX, y[2*i]), math.Max(maxX, y[2*i])
		minY, maxY = math.Min(minY, y[2*i+1]), math.Max(maxY, y[2*i+1])
	}
	half := math.Max(maxX-minX, maxY-minY)/2 + 1e-5
	root := newNode((minX+maxX)/2, (minY+maxY)/2, half)
	for i := 0; i < n; i++ {
		root.insert(i, y, 0)
	}
	rep := make([]float64, 2*n)
	z := 0.0
	for i := 0; i < n; i++ {
		var fx, fy, zi float64
		root.repulse(i, y[2*i], y[2*i+1], theta, &fx, &fy, &zi)
		rep[2*i], rep[2*i+1] = fx, fy
		z += zi
	}
	for i := 0; i < n; i++ {
		ax, ay := 0.0, 0.0
		for t, j := range p.cols[i] {
			dx, dy := y[2*i]-y[2*j], y[2*i+1]-y[2*j+1]
			a := p.vals[i][t] / (1 + dx*dx + dy*dy)
			ax += a * dx
			ay += a * dy
		}
		grad[2*i] = 4 * (exag*ax - rep[2*i]/z)
		grad[2*i+1] = 4 * (exag*ay - rep[2*i+1]/z)
	}
}

// Trustworthiness is scikit-learn's trustworthiness(X, Y, n_neighbors=k): how far the k nearest neighbours
// in the embedding are from being neighbours in the input (1 = perfectly kept).
func Trustworthiness(x []float64, d int, y []float64, dy int, n, k int) float64 {
	rankIn := make([]int, n)
	penalty := 0.0
	dist := func(v []float64, dim, i, j int) float64 {
		s := 0.0
		for t := 0; t < dim; t++ {
			e := v[i*dim+t] - v[j*dim+t]
			s += e * e
		}
		return s
	}
	idx := make([]int, n)
	dd := make([]float64, n)
	for i := 0; i < n; i++ {
		for j := 0; j < n; j++ {
			idx[j] = j
			dd[j] = dist(x, d, i, j)
		}
		dd[i] = -1
		sort.Slice(idx, func(a, b int) bool { return dd[idx[a]] < dd[idx[b]] || (dd[idx[a]] == dd[idx[b]] && idx[a] < idx[b]) })
		for r, j := range idx {
			rankIn[j] = r // rank 0 is i itself
		}
		for j := 0; j < n; j++ {
			idx[j] = j
			dd[j] = dist(y, dy, i, j)
		}
		dd[i] = -1
		sort.Slice(idx, func(a, b int) bool { return dd[idx[a]] < dd[idx[b]] || (dd[idx[a]] == dd[idx[b]] && idx[a] < idx[b]) })
		for _, j := range idx[1 : k+1] {
			if r := rankIn[j]; r > k {
				penalty += float64(r - k)
			}
		}
	}
	return 1 - 2/(float64(n)*float64(k)*(2*float64(n)-3*float64(k)-1))*penalty
}

// KNNAccuracy is the leave-one-out k-NN accuracy of labels in a 2-D embedding (how well clusters stay apart).
func KNNAccuracy(y []float64, labels []int, k int) float64 {
	n := len(labels)
	correct := 0
	idx := make([]int, n)
	dd := make([]float64, n)
	for i := 0; i < n; i++ {
		for j := 0; j < n; j++ {
			idx[j] = j
			dx, dy := y[2*i]-y[2*j], y[2*i+1]-y[2*j+1]
			dd[j] = dx*dx + dy*dy
		}
		dd[i] = math.Inf(1)
		sort.Slice(idx, func(a, b int) bool { return dd[idx[a]] < dd[idx[b]] })
		votes := map[int]int{}
		for _, j := range idx[:k] {
			votes[labels[j]]++
		}
		best, bv := -1, -1
		for l, v := range votes {
			if v > bv || (v == bv && l < best) {
				best, bv = l, v
			}
		}
		if best == labels[i] {
			correct++
		}
	}
	return float64(correct) / float64(n)
}
