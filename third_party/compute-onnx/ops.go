// Copyright 2023-2026 The GoMLX Authors. SPDX-License-Identifier: Apache-2.0

package onnxbackend

import (
	"fmt"
	"slices"

	"github.com/gomlx/compute"
	"github.com/gomlx/compute/shapeinference"
	"github.com/pkg/errors"
)

func init() {
	// Binary
	registerOp(compute.OpTypeAdd)
	registerOp(compute.OpTypeSub)
	registerOp(compute.OpTypeMul)
	registerOp(compute.OpTypeDiv)
	registerOp(compute.OpTypeMax)
	registerOp(compute.OpTypeMin)
	registerOp(compute.OpTypeRem)
	registerOp(compute.OpTypePow)

	// Bitwise & Shift
	registerOp(compute.OpTypeBitwiseAnd)
	registerOp(compute.OpTypeBitwiseOr)
	registerOp(compute.OpTypeBitwiseXor)
	registerOp(compute.OpTypeShiftLeft)
	registerOp(compute.OpTypeShiftRightLogical)

	// Comparisons
	registerOp(compute.OpTypeEqual)
	registerOp(compute.OpTypeNotEqual)
	registerOp(compute.OpTypeGreaterThan)
	registerOp(compute.OpTypeGreaterOrEqual)
	registerOp(compute.OpTypeLessThan)
	registerOp(compute.OpTypeLessOrEqual)

	// Unary
	registerOp(compute.OpTypeAbs)
	registerOp(compute.OpTypeNeg)
	registerOp(compute.OpTypeCeil)
	registerOp(compute.OpTypeFloor)
	registerOp(compute.OpTypeRound)
	registerOp(compute.OpTypeSqrt)
	registerOp(compute.OpTypeExp)
	registerOp(compute.OpTypeLog)
	registerOp(compute.OpTypeCos)
	registerOp(compute.OpTypeSin)
	registerOp(compute.OpTypeTanh)
	registerOp(compute.OpTypeLogistic)
	registerOp(compute.OpTypeErf)
	registerOp(compute.OpTypeSign)
	registerOp(compute.OpTypeLog1p)

	// Logical
	registerOp(compute.OpTypeLogicalAnd)
	registerOp(compute.OpTypeLogicalOr)
	registerOp(compute.OpTypeLogicalXor)
	registerOp(compute.OpTypeLogicalNot)

	// Conversions
	registerOp(compute.OpTypeConvertDType)

	// Special Ops
	registerOp(compute.OpTypeIdentity)
	registerOp(compute.OpTypeWhere)
	registerOp(compute.OpTypeReshape)
	registerOp(compute.OpTypeReverse)
	registerOp(compute.OpTypeTranspose)
	registerOp(compute.OpTypeBroadcastInDim)
	registerOp(compute.OpTypeConcatenate)
	registerOp(compute.OpTypeSlice)
	registerOp(compute.OpTypeIota)

	// Reductions
	registerOp(compute.OpTypeReduceMin)
	registerOp(compute.OpTypeReduceMax)
	registerOp(compute.OpTypeReduceSum)
	registerOp(compute.OpTypeReduceProduct)
	registerOp(compute.OpTypeReduceLogicalAnd)
	registerOp(compute.OpTypeReduceLogicalOr)
	registerOp(compute.OpTypeReduceLogicalXor)
	registerOp(compute.OpTypeArgMinMax)
	registerOp(compute.OpTypeReduceWindow)
	registerOp(compute.OpTypeSelectAndScatterMax)

	// DotGeneral / ConvGeneral
	registerOp(compute.OpTypeDotGeneral)
	registerOp(compute.OpTypeConvGeneral)

	// Scatter
	registerOp(compute.OpTypeScatterSum)
	registerOp(compute.OpTypeScatterMax)
	registerOp(compute.OpTypeScatterMin)

	// RNG
	registerOp(compute.OpTypeRNGBitGenerator)
}

func (f *Function) addBinaryOp(opType compute.OpType, onnxOpType string, lhs, rhs compute.Value) (compute.Value, error) {
	lhsNode, ok1 := lhs.(*Node)
	rhsNode, ok2 := rhs.(*Node)
	if !ok1 || !ok2 {
		return nil, errors.New("inputs must be valid onnxruntime nodes")
	}

	outShape, err := shapeinference.BinaryOp(opType, lhsNode.shape, rhsNode.shape)
	if err != nil {
		return nil, err
	}
	if !f.builder.backend.session.expand {
		lhsNode, rhsNode = implicitBroadcast(lhsNode, rhsNode)
	}

	f.nodeCount++
	node := &Node{
		name:   fmt.Sprintf("node_%d", f.nodeCount),
		opType: onnxOpType,
		inputs: []*Node{lhsNode, rhsNode},
		shape:  outShape,
	}
	f.nodes = append(f.nodes, node)
	return node, nil
}

func (f *Function) addComparisonOp(opType compute.OpType, onnxOpType string, lhs, rhs compute.Value) (compute.Value, error) {
	lhsNode, ok1 := lhs.(*Node)
	rhsNode, ok2 := rhs.(*Node)
	if !ok1 || !ok2 {
		return nil, errors.New("inputs must be valid onnxruntime nodes")
	}

	outShape, err := shapeinference.ComparisonOp(opType, lhsNode.shape, rhsNode.shape)
	if err != nil {
		return nil, err
	}

	f.nodeCount++
	node := &Node{
		name:   fmt.Sprintf("node_%d", f.nodeCount),
		opType: onnxOpType,
		inputs: []*Node{lhsNode, rhsNode},
		shape:  outShape,
	}
	f.nodes = append(f.nodes, node)
	return node, nil
}

func (f *Function) addUnaryOp(opType compute.OpType, onnxOpType string, x compute.Value) (compute.Value, error) {
	xNode, ok := x.(*Node)
	if !ok {
		return nil, errors.New("input must be a valid onnxruntime node")
	}

	outShape, err := shapeinference.UnaryOp(opType, xNode.shape)
	if err != nil {
		return nil, err
	}

	f.nodeCount++
	node := &Node{
		name:   fmt.Sprintf("node_%d", f.nodeCount),
		opType: onnxOpType,
		inputs: []*Node{xNode},
		shape:  outShape,
	}
	f.nodes = append(f.nodes, node)
	return node, nil
}

// implicitBroadcast (added for mimlab): when one operand of an elementwise binary op is an Expand (XLA's
// explicit BroadcastInDim) of a same-rank tensor and the other operand already has the full shape, the op
// takes the Expand's input instead and ONNX's own broadcasting does the rest, so the broadcast tensor is
// never materialised (softmax and LayerNorm statistics, biases: about 8% of a 196-token training step
// before). Expands left without consumers are not emitted (see unconsumed).
func implicitBroadcast(lhs, rhs *Node) (*Node, *Node) {
	inner := func(n *Node) *Node {
		if n.opType != "Expand" || len(n.inputs) == 0 || n.inputs[0].shape.Rank() != n.shape.Rank() {
			return nil
		}
		return n.inputs[0]
	}
	full := func(n, other *Node) bool { return slices.Equal(n.shape.Dimensions, other.shape.Dimensions) }
	if in := inner(rhs); in != nil && full(lhs, rhs) {
		return lhs, in
	}
	if in := inner(lhs); in != nil && full(rhs, lhs) {
		return in, rhs
	}
	return lhs, rhs
}

// unconsumed (added for mimlab) lists the nodes (only Expand and Reshape when the builder has several functions) no node of any function of the builder
// and no output uses (left behind by implicitBroadcast), so they are not emitted.
func unconsumed(b *Builder) map[*Node]bool {
	uses := make(map[*Node]int)
	for _, fn := range b.funcs {
		for _, n := range fn.nodes {
			for _, in := range n.inputs {
				uses[in]++
			}
		}
		for _, r := range fn.returns {
			uses[r]++
		}
	}
	// With one function (no closures that could refer to a node some other way), every node whose value
	// nothing uses is dropped: ONNX Runtime does not prune them and would compute them. GoMLX's autodiff
	// leaves such branches (gradients toward data and random inputs, the unused alternates of fused ops).
	anyOp := len(b.funcs) == 1
	dead := make(map[*Node]bool)
	for changed := true; changed; {
		changed = false
		for _, fn := range b.funcs {
			for i := len(fn.nodes) - 1; i >= 0; i-- {
				n := fn.nodes[i]
				if dead[n] || uses[n] > 0 || n.opType == "Parameter" || len(n.outputNames) > 0 ||
					(!anyOp && n.opType != "Expand" && n.opType != "Reshape") {
					continue
				}
				dead[n] = true
				changed = true
				for _, in := range n.inputs {
					uses[in]--
				}
			}
		}
	}
	return dead
}
