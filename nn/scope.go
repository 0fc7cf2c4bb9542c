package nn

import (
	"fmt"
	"math"
	"math/rand/v2"
	"slices"
	"sort"
	"strings"

	"github.com/gomlx/compute/dtypes"
	"github.com/gomlx/compute/shapes"
	. "github.com/gomlx/gomlx/core/graph"
)

// InitKind names how a parameter starts.
type InitKind int

const (
	InitZeros InitKind = iota
	InitOnes
	InitConst       // every entry = Init.Value
	InitXavier      // xavier_uniform over the last two axes as PyTorch computes fan_in/fan_out for Linear [out,in]
	InitTruncNormal // normal(0, Std) truncated at +-Std, as CAE's trunc_normal_(std, a=-std, b=std)
	InitNormal      // normal(0, Std)
)

// Init describes a parameter's initialiser.
type Init struct {
	Kind  InitKind
	Std   float64
	Value float64
	// FanIn/FanOut override the fans for xavier (used when a [D,C,p,p] conv weight is stored as a Linear).
	FanIn, FanOut int
}

// ParamSpec is one declared parameter.
type ParamSpec struct {
	Name    string
	Dims    []int
	Init    Init
	NoDecay bool // excluded from weight decay (1-D parameters and biases, as the CAE optimiser groups)
}

// Size is the number of entries.
func (p ParamSpec) Size() int {
	n := 1
	for _, d := range p.Dims {
		n *= d
	}
	return n
}

// RandSpec is one per-step random input (uniform in [0,1)), drawn on the host from the step's seed.
type RandSpec struct {
	Name string
	Dims []int
}

// Builder collects (declare mode) or supplies (apply mode) the parameters of one graph build.
type Builder struct {
	G        *Graph
	DType    dtypes.DType
	Training bool // drop path active
	// Precision is the arithmetic of the matrix products (precision.go); "" is fp32. WithPrecision sets it.
	Precision Precision

	declaring bool
	params    []ParamSpec
	index     map[string]int
	nodes     []*Node
	rands     []RandSpec
	randIndex map[string]int
	randNodes []*Node
	captures  map[string]*Node
}

// Scope is a naming prefix inside a Builder. Scopes are values: Sub returns a new one.
type Scope struct {
	b      *Builder
	prefix string
	branch string // names a second pass over the same parameters (its random inputs and captures are its own)
}

// Root is the scope with no prefix.
func (b *Builder) Root() Scope { return Scope{b: b} }

// Sub returns the scope prefix.name.
func (s Scope) Sub(name string) Scope {
	if s.prefix == "" {
		return Scope{b: s.b, prefix: name, branch: s.branch}
	}
	return Scope{b: s.b, prefix: s.prefix + "." + name, branch: s.branch}
}

// Branch returns the same scope for a second pass over the same parameters (CAE's alignment branch runs the
// encoder again): its random inputs (drop path) and captures are named apart from the first pass.
func (s Scope) Branch(name string) Scope { return Scope{b: s.b, prefix: s.prefix, branch: name} }

func (s Scope) branchName(name string) string {
	full := s.Name(name)
	if s.branch != "" {
		full = s.branch + ":" + full
	}
	return full
}

// Subf is Sub with formatting.
func (s Scope) Subf(format string, args ...any) Scope { return s.Sub(fmt.Sprintf(format, args...)) }

// Builder returns the scope's builder.
func (s Scope) Builder() *Builder { return s.b }

// G is the graph being built.
func (s Scope) G() *Graph { return s.b.G }

// Name is the full name of a child.
func (s Scope) Name(name string) string {
	if s.prefix == "" {
		return name
	}
	return s.prefix + "." + name
}

// Param declares (dry build) or returns (real build) the parameter prefix.name.
func (s Scope) Param(name string, dims []int, init Init) *Node {
	full := s.Name(name)
	b := s.b
	if b.declaring {
		if i, dup := b.index[full]; dup {
			// A second use of a name is the same parameter (CAE's alignment branch reuses the encoder); a
			// different shape is a naming collision.
			if !slices.Equal(b.params[i].Dims, dims) {
				panic(fmt.Errorf("nn: parameter %q declared with shapes %v and %v", full, b.params[i].Dims, dims))
			}
			return b.nodes[i]
		}
		noDecay := len(dims) <= 1 || strings.HasSuffix(full, "bias") || strings.HasSuffix(full, "_bias")
		b.index[full] = len(b.params)
		b.params = append(b.params, ParamSpec{Name: full, Dims: append([]int(nil), dims...), Init: init, NoDecay: noDecay})
		n := Parameter(b.G, full, shapes.Make(b.DType, dims...))
		b.nodes = append(b.nodes, n)
		return n
	}
	i, ok := b.index[full]
	if !ok {
		panic(fmt.Errorf("nn: parameter %q was not declared by the dry build (the model's graph depends on something other than its config)", full))
	}
	return b.nodes[i]
}

// Uniform declares (dry build) or returns (real build) a per-step random input in [0,1).
func (s Scope) Uniform(name string, dims ...int) *Node {
	full := s.branchName(name)
	b := s.b
	if b.declaring {
		if _, dup := b.randIndex[full]; dup {
			panic(fmt.Errorf("nn: random input %q declared twice", full))
		}
		b.randIndex[full] = len(b.rands)
		b.rands = append(b.rands, RandSpec{Name: full, Dims: append([]int(nil), dims...)})
		n := Parameter(b.G, "rand:"+full, shapes.Make(b.DType, dims...))
		b.randNodes = append(b.randNodes, n)
		return n
	}
	i, ok := b.randIndex[full]
	if !ok {
		panic(fmt.Errorf("nn: random input %q was not declared by the dry build", full))
	}
	return b.randNodes[i]
}

// Capture records an intermediate node under a name (for attention maps and tests).
func (s Scope) Capture(name string, n *Node) {
	if s.b.captures != nil {
		s.b.captures[s.branchName(name)] = n
	}
}

// Captured returns the nodes recorded with Capture when capture was enabled.
func (b *Builder) Captured() map[string]*Node { return b.captures }

// EnableCapture makes Capture record nodes.
func (b *Builder) EnableCapture() { b.captures = map[string]*Node{} }

// Scalar is a constant in the builder's dtype.
func (s Scope) Scalar(v float64) *Node { return Scalar(s.b.G, s.b.DType, v) }

// ParamSet is the ordered list of a model's parameters and per-step random inputs.
type ParamSet struct {
	Params []ParamSpec
	Rands  []RandSpec
	index  map[string]int
}

// Index returns the position of a parameter by name.
func (ps *ParamSet) Index(name string) (int, bool) {
	i, ok := ps.index[name]
	return i, ok
}

// NumValues is the total number of parameter entries.
func (ps *ParamSet) NumValues() int {
	n := 0
	for _, p := range ps.Params {
		n += p.Size()
	}
	return n
}

// Names lists the parameter names sorted (for messages).
func (ps *ParamSet) Names() []string {
	out := make([]string, len(ps.Params))
	for i, p := range ps.Params {
		out[i] = p.Name
	}
	sort.Strings(out)
	return out
}

// initRand draws the parameter values in declaration order from one seeded source.
func (ps *ParamSet) initRand(seed uint64) [][]float32 {
	r := rand.New(rand.NewPCG(seed, 0x6d696d6c6162))
	out := make([][]float32, len(ps.Params))
	for i, p := range ps.Params {
		out[i] = InitValues(p, r)
	}
	return out
}

// InitValues draws one parameter's initial values.
func InitValues(p ParamSpec, r *rand.Rand) []float32 {
	v := make([]float32, p.Size())
	switch p.Init.Kind {
	case InitZeros:
	case InitOnes:
		for i := range v {
			v[i] = 1
		}
	case InitConst:
		for i := range v {
			v[i] = float32(p.Init.Value)
		}
	case InitXavier:
		fanIn, fanOut := p.Init.FanIn, p.Init.FanOut
		if fanIn == 0 || fanOut == 0 {
			fanOut = p.Dims[0]
			fanIn = p.Size() / fanOut
		}
		a := math.Sqrt(6 / float64(fanIn+fanOut))
		for i := range v {
			v[i] = float32((2*r.Float64() - 1) * a)
		}
	case InitTruncNormal:
		for i := range v {
			for {
				x := r.NormFloat64()
				if x >= -1 && x <= 1 {
					v[i] = float32(x * p.Init.Std)
					break
				}
			}
		}
	case InitNormal:
		for i := range v {
			v[i] = float32(r.NormFloat64() * p.Init.Std)
		}
	}
	return v
}
