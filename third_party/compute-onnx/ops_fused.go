// Copyright 2026 The GoMLX Authors. SPDX-License-Identifier: Apache-2.0

package onnxbackend

// Fused ops (added for mimlab, BENCHMARKS.md issue 18): GELU, LayerNorm and Softmax as one ONNX Runtime kernel
// each instead of a chain of elementwise ops and reductions. Only float32 is lowered (ORT's CPU kernels for
// these ops are float-only); other dtypes, and layouts these lowerings do not cover, answer
// compute.ErrNotImplemented, and GoMLX falls back to the decomposed graph.

import (
	"fmt"
	"slices"

	"github.com/gomlx/compute"
	"github.com/gomlx/compute/dtypes"
	"github.com/pkg/errors"

	onnx "github.com/gomlx/compute-onnx/internal/protos"
)

func init() {
	registerOp(compute.OpTypeFusedGelu)
	registerOp(compute.OpTypeFusedLayerNorm)
	registerOp(compute.OpTypeFusedSoftmax)
}

func (f *Function) fusedNode(onnxOp string, inputs []*Node, attrs ...*onnx.AttributeProto) *Node {
	f.nodeCount++
	node := &Node{name: fmt.Sprintf("node_%d", f.nodeCount), opType: onnxOp, inputs: inputs, shape: inputs[0].shape, attributes: attrs}
	f.nodes = append(f.nodes, node)
	return node
}

func fusedFloat32(op compute.OpType, x compute.Value) (*Node, error) {
	n, ok := x.(*Node)
	if !ok {
		return nil, errors.New("input must be a valid onnxruntime node")
	}
	if n.shape.DType != dtypes.Float32 {
		return nil, errors.Wrapf(compute.ErrNotImplemented, "%s on %s (only float32 is lowered to a fused ONNX Runtime kernel)", op, n.shape.DType)
	}
	return n, nil
}

// FusedGelu is ONNX's Gelu (opset 20): approximate "none" (erf) or "tanh".
func (f *Function) FusedGelu(x compute.Value, exact bool) (compute.Value, error) {
	n, err := fusedFloat32(compute.OpTypeFusedGelu, x)
	if err != nil {
		return nil, err
	}
	approx := "none"
	if !exact {
		approx = "tanh"
	}
	return f.fusedNode("Gelu", []*Node{n},
		&onnx.AttributeProto{Name: "approximate", Type: onnx.AttributeProto_STRING, S: []byte(approx)}), nil
}

// FusedSoftmax is ONNX's Softmax (opset 13) over one axis.
func (f *Function) FusedSoftmax(x compute.Value, axis int) (compute.Value, error) {
	n, err := fusedFloat32(compute.OpTypeFusedSoftmax, x)
	if err != nil {
		return nil, err
	}
	return f.fusedNode("Softmax", []*Node{n},
		&onnx.AttributeProto{Name: "axis", Type: onnx.AttributeProto_INT, I: int64(axis)}), nil
}

// FusedLayerNorm is ONNX's LayerNormalization (opset 17) over the trailing axes. ONNX requires a scale
// input; without gamma a constant 1 is used, and beta is optional.
func (f *Function) FusedLayerNorm(x compute.Value, axes []int, epsilon float64, gamma, beta compute.Value) (compute.Value, error) {
	n, err := fusedFloat32(compute.OpTypeFusedLayerNorm, x)
	if err != nil {
		return nil, err
	}
	rank := n.shape.Rank()
	if len(axes) == 0 {
		return nil, errors.Wrap(compute.ErrNotImplemented, "FusedLayerNorm with no axes")
	}
	for i, a := range axes {
		if a != rank-len(axes)+i {
			return nil, errors.Wrapf(compute.ErrNotImplemented, "FusedLayerNorm over axes %v of a rank-%d tensor (only trailing axes are lowered)", axes, rank)
		}
	}
	normDims := n.shape.Dimensions[axes[0]:]
	inputs := []*Node{n}
	if gamma != nil {
		g, ok := gamma.(*Node)
		if !ok || !slices.Equal(g.shape.Dimensions, normDims) || g.shape.DType != dtypes.Float32 {
			return nil, errors.Wrap(compute.ErrNotImplemented, "FusedLayerNorm: gamma must be float32 of the normalised axes' shape")
		}
		inputs = append(inputs, g)
	} else {
		size := 1
		for _, d := range normDims {
			size *= d
		}
		ones := make([]float32, size)
		for i := range ones {
			ones[i] = 1
		}
		c, err := f.Constant(ones, normDims...)
		if err != nil {
			return nil, err
		}
		inputs = append(inputs, c.(*Node))
	}
	if beta != nil {
		b, ok := beta.(*Node)
		if !ok || !slices.Equal(b.shape.Dimensions, normDims) || b.shape.DType != dtypes.Float32 {
			return nil, errors.Wrap(compute.ErrNotImplemented, "FusedLayerNorm: beta must be float32 of the normalised axes' shape")
		}
		inputs = append(inputs, b)
	}
	return f.fusedNode("LayerNormalization", inputs,
		&onnx.AttributeProto{Name: "axis", Type: onnx.AttributeProto_INT, I: int64(axes[0])},
		&onnx.AttributeProto{Name: "epsilon", Type: onnx.AttributeProto_FLOAT, F: float32(epsilon)}), nil
}
