package nn

import (
	"fmt"
	"io"
	"math/rand"
	"testing"

	"github.com/gomlx/compute"
	. "github.com/gomlx/gomlx/core/graph"
	"github.com/gomlx/gomlx/core/tensors"
)

// TestORTLowering: how mimlab's compute-onnx lowers ops for speed (every DotGeneral as Transpose/Reshape +
// MatMul instead of ONNX Einsum; elementwise ops on a broadcast operand through ONNX's implicit
// broadcasting instead of a materialised Expand, BENCHMARKS.md) changes nothing a graph computes: each case
// agrees with upstream's lowering ("dot=einsum,broadcast=expand") and with the pure-Go backend.
func TestORTLowering(t *testing.T) {
	if !ORTAvailable() {
		t.Skip("ONNX Runtime not found")
	}
	type dot struct{ lc, lb, rc, rb []int }
	type lowerCase struct {
		name     string
		lhs, rhs []int
		fn       func(a, b *Node) *Node
	}
	var cases []lowerCase
	for _, c := range []struct {
		name     string
		lhs, rhs []int
		d        dot
	}{
		{"matrix product", []int{5, 3}, []int{3, 4}, dot{[]int{1}, nil, []int{0}, nil}},
		{"a times b transposed", []int{5, 3}, []int{4, 3}, dot{[]int{1}, nil, []int{1}, nil}},
		{"a transposed times b (a weight gradient)", []int{3, 5}, []int{3, 4}, dot{[]int{0}, nil, []int{0}, nil}},
		{"attention scores q k^T", []int{2, 3, 5, 4}, []int{2, 3, 6, 4}, dot{[]int{3}, []int{0, 1}, []int{3}, []int{0, 1}}},
		{"attention output p v", []int{2, 3, 5, 6}, []int{2, 3, 6, 4}, dot{[]int{3}, []int{0, 1}, []int{2}, []int{0, 1}}},
		{"batch axes not leading", []int{5, 2, 4}, []int{4, 2, 3}, dot{[]int{2}, []int{1}, []int{0}, []int{1}}},
		{"two contracting axes", []int{2, 6, 3, 4}, []int{3, 4, 5}, dot{[]int{2, 3}, nil, []int{0, 1}, nil}},
		{"two free axes each side", []int{2, 3, 4}, []int{4, 5, 2}, dot{[]int{2}, nil, []int{0}, nil}},
		{"batch, several free and contracting", []int{2, 3, 4, 5, 6}, []int{6, 2, 7, 5}, dot{[]int{3, 4}, []int{0}, []int{3, 0}, []int{1}}},
		{"to a scalar", []int{6}, []int{6}, dot{[]int{0}, nil, []int{0}, nil}},
		{"weight gradient over batch and tokens", []int{2, 3, 5}, []int{2, 3, 4}, dot{[]int{0, 1}, nil, []int{0, 1}, nil}},
		{"two contracting axes, rhs stored transposed", []int{5, 2, 3}, []int{4, 2, 3}, dot{[]int{1, 2}, nil, []int{1, 2}, nil}},
		{"both sides stored transposed", []int{6, 5}, []int{4, 6}, dot{[]int{0}, nil, []int{1}, nil}},
		{"contracting axes out of storage order", []int{3, 2, 5}, []int{2, 3, 4}, dot{[]int{1, 0}, nil, []int{0, 1}, nil}},
	} {
		d := c.d
		cases = append(cases, lowerCase{"dot: " + c.name, c.lhs, c.rhs, func(a, b *Node) *Node { return DotGeneral(a, d.lc, d.lb, b, d.rc, d.rb) }})
	}
	cases = append(cases,
		lowerCase{"softmax-like broadcasts (x - max) / sum", []int{2, 3, 5}, []int{1}, func(a, _ *Node) *Node {
			e := Exp(Sub(a, ReduceAndKeep(a, ReduceMax, -1)))
			return Div(e, ReduceAndKeep(e, ReduceSum, -1))
		}},
		lowerCase{"bias on either side, both broadcast", []int{4, 3}, []int{3}, func(a, b *Node) *Node {
			bb := BroadcastPrefix(b, 4)
			m := BroadcastToDims(Reshape(ReduceAllMax(a), 1, 1), 4, 3)
			return Add(Add(Mul(bb, a), Sub(a, bb)), Add(Mul(Max(bb, m), Div(m, bb)), Div(Sub(bb, a), Exp(a))))
		}},
	)
	backends := map[string]compute.Backend{}
	for _, name := range []string{"go", "ort", "ort upstream"} {
		var (
			be  compute.Backend
			err error
		)
		switch name {
		case "ort upstream":
			t.Setenv(ORTOptionsEnv, "dot=einsum,broadcast=expand")
			be, _, err = NewBackendWith("ort", BackendOptions{Threads: 1}, io.Discard)
			t.Setenv(ORTOptionsEnv, "")
		default:
			be, _, err = NewBackendWith(name, BackendOptions{Threads: 1}, io.Discard)
		}
		if err != nil {
			t.Fatal(err)
		}
		backends[name] = be
	}
	rng := rand.New(rand.NewSource(1))
	random := func(dims []int) []float32 {
		n := 1
		for _, d := range dims {
			n *= d
		}
		v := make([]float32, n)
		for i := range v {
			v[i] = float32(rng.NormFloat64())
		}
		return v
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			a, b := random(c.lhs), random(c.rhs)
			got := map[string][]float32{}
			for name, be := range backends {
				// a tensor belongs to one backend: fresh ones for each
				out, err := ExecOnce(be, c.fn, tensors.FromFlatDataAndDimensions(a, c.lhs...), tensors.FromFlatDataAndDimensions(b, c.rhs...))
				if err != nil {
					t.Fatalf("%s: %v", name, err)
				}
				got[name] = Float32s(out)
			}
			for _, name := range []string{"ort", "ort upstream"} {
				if len(got[name]) != len(got["go"]) {
					t.Fatalf("%s: %d values, go %d", name, len(got[name]), len(got["go"]))
				}
				for i, want := range got["go"] {
					if d := got[name][i] - want; d > 1e-4 || d < -1e-4 {
						t.Fatalf("%s: value %d is %v, go backend %v (%s)", name, i, got[name][i], want, fmt.Sprint(c.lhs, c.rhs))
					}
				}
			}
		})
	}
}

// ONNX Runtime computes every node of the model it is given, used or not, and GoMLX's autodiff leaves unused
// branches (gradients toward data and random inputs, the unused alternates of fused ops). mimlab's
// compute-onnx emits only the nodes an output needs: here the unused branch is a Gather out of bounds,
// which fails the run if it is computed.
func TestORTDropsUnusedNodes(t *testing.T) {
	be := ortBackend(t, "the pruning is compute-onnx's")
	out, err := ExecOnce(be, func(x *Node) *Node {
		_ = Gather(x, Const(x.Graph(), [][]int64{{1000}}))
		return MulScalar(x, 2)
	}, tensors.FromFlatDataAndDimensions([]float32{1, 2, 3, 4, 5}, 5))
	if err != nil {
		t.Fatalf("a graph with an unused node failed: %v", err)
	}
	defer Free(out)
	if got := Float32s(out); got[4] != 10 {
		t.Fatalf("got %v, want 2x the input", got)
	}
}
