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
	"github.com/gomlx/gomlx/core/tensors"
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
	// EMAOf names the parameter this one is the exponential moving average of (Scope.EMA): it starts as a copy
	// of it, receives no gradient, no clipping, no weight decay and no AdamW, and is updated after each
	// optimiser step. Empty for a parameter trained by gradients.
	EMAOf string
	// EMAGroup is the EMA copy (EMASpec.Prefix) the parameter belongs to: its momentum.
	EMAGroup string
}

// Trained says the parameter is updated by the optimiser (not an EMA copy).
func (p ParamSpec) Trained() bool { return p.EMAOf == "" }

// EMASpec is one declared EMA copy: every parameter under Prefix follows the parameter of the same name
// under Of, with the momentum Momentum (fed per step as the scheduled value MomentumName).
type EMASpec struct {
	Prefix, Of string
	Momentum   Sched
}

// MomentumName is the scheduled value that carries the copy's momentum.
func (e EMASpec) MomentumName() string { return "ema:" + e.Prefix }

// SchedSpec is one scheduled scalar input of the training step.
type SchedSpec struct {
	Name  string
	Sched Sched
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

	emas       []EMASpec
	scheds     []SchedSpec
	schedIndex map[string]int
	schedNodes []*Node
}

// Scope is a naming prefix inside a Builder. Scopes are values: Sub returns a new one.
type Scope struct {
	b      *Builder
	prefix string
	branch string // names a second pass over the same parameters (its random inputs and captures are its own)
	ema    *EMASpec
}

// Root is the scope with no prefix.
func (b *Builder) Root() Scope { return Scope{b: b} }

// Sub returns the scope prefix.name.
func (s Scope) Sub(name string) Scope {
	if s.prefix == "" {
		return Scope{b: s.b, prefix: name, branch: s.branch, ema: s.ema}
	}
	return Scope{b: s.b, prefix: s.prefix + "." + name, branch: s.branch, ema: s.ema}
}

// Branch returns the same scope for a second pass over the same parameters (CAE's alignment branch runs the
// encoder again): its random inputs (drop path) and captures are named apart from the first pass.
func (s Scope) Branch(name string) Scope {
	return Scope{b: s.b, prefix: s.prefix, branch: name, ema: s.ema}
}

// EMA returns the root scope name, whose parameters are the exponential moving average of the parameters
// of the same names under of: teacher := s.EMA("teacher", "encoder", m) makes teacher.blocks.0.attn.q.weight
// follow encoder.blocks.0.attn.q.weight. Build the same module under it as under of (m.Encoder.Encode(teacher,
// ...)); every parameter it declares must exist under of with the same shape (Declare says which does not).
// The framework owns these parameters: they start as copies, get no gradient (the nodes come back under
// StopGradient), no clipping, weight decay or AdamW, and after each optimiser step become
// momentum x themselves + (1 - momentum) x the updated source, momentum following its schedule. They are
// checkpointed, resumed and exported like any parameter, under their own prefix. A module built under the
// copy runs deterministically: no drop path (the targets of data2vec, I-JEPA and MoCo v3 come from a
// teacher in eval mode or with drop path 0).
func (s Scope) EMA(name, of string, momentum Sched) Scope {
	b := s.b
	e := EMASpec{Prefix: name, Of: of, Momentum: momentum}
	found := false
	for _, x := range b.emas {
		if x.Prefix != name && (strings.HasPrefix(x.Prefix, name+".") || strings.HasPrefix(name, x.Prefix+".")) {
			panic(fmt.Errorf("nn: EMA copies %q and %q nest: one would hold the other's parameters", x.Prefix, name))
		}
		if x.Prefix == name {
			if x.Of != of || x.Momentum != momentum {
				panic(fmt.Errorf("nn: EMA %q declared twice, as the EMA of %q (%v) and of %q (%v)", name, x.Of, x.Momentum, of, momentum))
			}
			found = true
		}
	}
	if !found {
		if !b.declaring {
			panic(fmt.Errorf("nn: EMA %q was not declared by the dry build", name))
		}
		if err := momentum.Validate("momentum of EMA "+name, 0, 1); err != nil {
			panic(fmt.Errorf("nn: %w", err)) // a method that forgot to validate its keys still cannot run an impossible momentum
		}
		b.emas = append(b.emas, e)
		s.Scheduled(e.MomentumName(), momentum) // declared beside the copy; the Trainer feeds it per step
	}
	return Scope{b: b, prefix: name, branch: s.branch, ema: &e}
}

// Scheduled declares (dry build) or returns (real build) a scalar input of the training step that follows sc:
// the Trainer feeds sc.At(step, total) before every step. Only training graphs have scheduled values.
func (s Scope) Scheduled(name string, sc Sched) *Node {
	b := s.b
	if b.declaring {
		if err := sc.Validate("scheduled value "+name, math.Inf(-1), math.Inf(1)); err != nil {
			panic(fmt.Errorf("nn: %w", err)) // an unknown shape would otherwise hold From silently
		}
		if i, dup := b.schedIndex[name]; dup {
			if b.scheds[i].Sched != sc {
				panic(fmt.Errorf("nn: scheduled value %q declared twice, as %v and %v", name, b.scheds[i].Sched, sc))
			}
			return b.schedNodes[i]
		}
		b.schedIndex[name] = len(b.scheds)
		b.scheds = append(b.scheds, SchedSpec{Name: name, Sched: sc})
		n := Parameter(b.G, "sched:"+name, shapes.Make(b.DType))
		b.schedNodes = append(b.schedNodes, n)
		return n
	}
	i, ok := b.schedIndex[name]
	if !ok {
		panic(fmt.Errorf("nn: scheduled value %q used in a graph that has none (only training steps have scheduled values)", name))
	}
	return b.schedNodes[i]
}

// Progress is the fraction of training done at the step being taken, in [0, 1): the step reaching the graph.
func (s Scope) Progress() *Node {
	return s.Scheduled("progress", Sched{From: 0, To: 1, Shape: "linear"})
}

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
		b.params = append(b.params, ParamSpec{Name: full, Dims: append([]int(nil), dims...), Init: init, NoDecay: noDecay, EMAOf: s.emaSource(full), EMAGroup: s.emaGroup()})
		n := Parameter(b.G, full, shapes.Make(b.DType, dims...))
		b.nodes = append(b.nodes, n)
		return s.guard(n)
	}
	i, ok := b.index[full]
	if !ok {
		panic(fmt.Errorf("nn: parameter %q was not declared by the dry build (the model's graph depends on something other than its config)", full))
	}
	return s.guard(b.nodes[i])
}

// emaSource is the source of a parameter declared under an EMA scope ("" outside one).
func (s Scope) emaSource(full string) string {
	if s.ema == nil {
		return ""
	}
	rest, ok := strings.CutPrefix(full, s.ema.Prefix+".")
	if !ok {
		panic(fmt.Errorf("nn: parameter %q declared under the EMA scope %q", full, s.ema.Prefix))
	}
	return s.ema.Of + "." + rest
}

// emaGroup is the EMA copy a parameter declared under this scope belongs to ("" outside one).
func (s Scope) emaGroup() string {
	if s.ema == nil {
		return ""
	}
	return s.ema.Prefix
}

// guard puts an EMA copy's parameter under StopGradient: nothing a loss computes from it reaches it.
func (s Scope) guard(n *Node) *Node {
	if s.ema == nil {
		return n
	}
	return StopGradient(n)
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
	EMAs   []EMASpec   // the EMA copies the model declared (Scope.EMA)
	Scheds []SchedSpec // the training step's scheduled scalar inputs, EMA momenta included
	index  map[string]int
	// trained caches Trained (set by Declare; the set is not changed after it).
	trained []int
}

// checkEMAs: every EMA parameter's source exists, is trained by gradients and has its shape.
func (ps *ParamSet) checkEMAs() error {
	for _, p := range ps.Params {
		if p.EMAOf == "" {
			continue
		}
		j, ok := ps.index[p.EMAOf]
		if !ok {
			return fmt.Errorf("nn: %s is declared as the EMA of %s, which the model does not have (build the same module under the EMA scope as under its source)", p.Name, p.EMAOf)
		}
		src := ps.Params[j]
		if !src.Trained() {
			return fmt.Errorf("nn: %s is declared as the EMA of %s, itself an EMA copy", p.Name, p.EMAOf)
		}
		if !slices.Equal(src.Dims, p.Dims) {
			return fmt.Errorf("nn: %s %v is declared as the EMA of %s %v: shapes differ", p.Name, p.Dims, src.Name, src.Dims)
		}
	}
	return nil
}

// Alias returns params with every parameter under dst replaced by the one of the same name under src (the
// tensors themselves, not copies: free only the original slice): evaluation and export read "encoder." and
// Alias(params, "encoder", "teacher") lets them read a method's EMA teacher. kept names the dst parameters
// src has no counterpart for (data2vec's student has a mask token its teacher never uses): they keep dst's
// tensor, and the caller says whether that is harmless. A counterpart of another shape is an error.
func (ps *ParamSet) Alias(params []*tensors.Tensor, dst, src string) (out []*tensors.Tensor, kept []string, err error) {
	out = append([]*tensors.Tensor(nil), params...)
	n := 0
	for i, p := range ps.Params {
		rest, ok := strings.CutPrefix(p.Name, dst+".")
		if !ok {
			continue
		}
		j, ok := ps.index[src+"."+rest]
		if !ok {
			kept = append(kept, rest)
			continue
		}
		if !slices.Equal(ps.Params[j].Dims, p.Dims) {
			return nil, nil, fmt.Errorf("nn: %s %v and its counterpart %s %v differ in shape", p.Name, p.Dims, ps.Params[j].Name, ps.Params[j].Dims)
		}
		out[i] = params[j]
		n++
	}
	if n == 0 {
		return nil, nil, fmt.Errorf("nn: the model has no parameters under %q that %q mirrors", dst, src)
	}
	return out, kept, nil
}

// Trained lists the positions of the parameters the optimiser updates (computed once by Declare: the
// training step asks every step).
func (ps *ParamSet) Trained() []int {
	if ps.trained != nil {
		return ps.trained
	}
	return ps.trainedPositions()
}

func (ps *ParamSet) trainedPositions() []int {
	var out []int
	for i, p := range ps.Params {
		if p.Trained() {
			out = append(out, i)
		}
	}
	return out
}

// SchedValues are the scheduled inputs' values at step (0-based) of total, in declaration order.
func (ps *ParamSet) SchedValues(step, total int) []float64 {
	out := make([]float64, len(ps.Scheds))
	for i, s := range ps.Scheds {
		out[i] = s.Sched.At(step, total)
	}
	return out
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
		if p.Trained() { // an EMA copy draws nothing: a model with a teacher initialises its student as without one
			out[i] = InitValues(p, r)
		}
	}
	ps.copyEMAs(out)
	return out
}

// copyEMAs sets every EMA copy to its source's values.
func (ps *ParamSet) copyEMAs(vals [][]float32) {
	for i, p := range ps.Params {
		if !p.Trained() {
			vals[i] = append([]float32(nil), vals[ps.index[p.EMAOf]]...)
		}
	}
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
