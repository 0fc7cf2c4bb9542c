// Copyright 2026 The GoMLX Authors. SPDX-License-Identifier: Apache-2.0

package onnxbackend

import (
	"fmt"
	"slices"
	"strings"

	"github.com/gomlx/compute"
	onnx "github.com/gomlx/compute-onnx/internal/protos"
	"github.com/gomlx/compute/dtypes"
	"github.com/gomlx/compute/shapeinference"
	"github.com/pkg/errors"
)

// DotGeneral performs a general dot product (matrix multiplication) of lhs and rhs.
// It maps the generalized contracting and batching axes of XLA semantics to ONNX Einsum.
func (f *Function) DotGeneral(
	lhs compute.Value,
	lhsContractingAxes []int,
	lhsBatchAxes []int,
	rhs compute.Value,
	rhsContractingAxes []int,
	rhsBatchAxes []int,
	config compute.DotGeneralConfig,
) (compute.Value, error) {
	lhsNode, ok1 := lhs.(*Node)
	rhsNode, ok2 := rhs.(*Node)
	if !ok1 || !ok2 {
		return nil, errors.New("DotGeneral: inputs must be valid onnxruntime nodes")
	}

	// 1. Infer output shape
	outShape, err := shapeinference.DotGeneral(
		lhsNode.shape, lhsContractingAxes, lhsBatchAxes,
		rhsNode.shape, rhsContractingAxes, rhsBatchAxes,
		config,
	)
	if err != nil {
		return nil, err
	}

	// Determine accumulation and output types
	accumulationDType := lhsNode.shape.DType
	if config.AccumulatorDType != dtypes.InvalidDType {
		accumulationDType = config.AccumulatorDType
	}

	expectedOutputDType := lhsNode.shape.DType
	if config.OutputDType != dtypes.InvalidDType {
		expectedOutputDType = config.OutputDType
	}

	// Cast inputs to accumulator type if necessary
	lhsInput := lhsNode
	rhsInput := rhsNode

	if lhsNode.shape.DType != accumulationDType {
		casted, err := f.ConvertDType(lhsNode, accumulationDType)
		if err != nil {
			return nil, err
		}
		lhsInput = casted.(*Node)
	}

	if rhsNode.shape.DType != accumulationDType {
		casted, err := f.ConvertDType(rhsNode, accumulationDType)
		if err != nil {
			return nil, err
		}
		rhsInput = casted.(*Node)
	}

	// 2. Generate Einsum equation
	charPool := "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ"
	charIdx := 0
	getNewChar := func() string {
		if charIdx >= len(charPool) {
			panic("DotGeneral: ran out of character pool for Einsum (rank is too high)")
		}
		c := string(charPool[charIdx])
		charIdx++
		return c
	}

	lhsRank := lhsInput.shape.Rank()
	rhsRank := rhsInput.shape.Rank()

	lhsChars := make([]string, lhsRank)
	for i := 0; i < lhsRank; i++ {
		lhsChars[i] = getNewChar()
	}

	rhsBatchMap := make(map[int]int)
	for idx, rhsAxis := range rhsBatchAxes {
		rhsBatchMap[rhsAxis] = lhsBatchAxes[idx]
	}

	rhsContractMap := make(map[int]int)
	for idx, rhsAxis := range rhsContractingAxes {
		rhsContractMap[rhsAxis] = lhsContractingAxes[idx]
	}

	rhsChars := make([]string, rhsRank)
	for i := 0; i < rhsRank; i++ {
		if lhsAxis, ok := rhsBatchMap[i]; ok {
			rhsChars[i] = lhsChars[lhsAxis]
		} else if lhsAxis, ok := rhsContractMap[i]; ok {
			rhsChars[i] = lhsChars[lhsAxis]
		} else {
			rhsChars[i] = getNewChar()
		}
	}

	outputChars := make([]string, 0)
	for _, lhsAxis := range lhsBatchAxes {
		outputChars = append(outputChars, lhsChars[lhsAxis])
	}

	lhsContractSet := make(map[int]bool)
	for _, axis := range lhsContractingAxes {
		lhsContractSet[axis] = true
	}
	lhsBatchSet := make(map[int]bool)
	for _, axis := range lhsBatchAxes {
		lhsBatchSet[axis] = true
	}
	for i := 0; i < lhsRank; i++ {
		if !lhsContractSet[i] && !lhsBatchSet[i] {
			outputChars = append(outputChars, lhsChars[i])
		}
	}

	rhsContractSet := make(map[int]bool)
	for _, axis := range rhsContractingAxes {
		rhsContractSet[axis] = true
	}
	rhsBatchSet := make(map[int]bool)
	for _, axis := range rhsBatchAxes {
		rhsBatchSet[axis] = true
	}
	for i := 0; i < rhsRank; i++ {
		if !rhsContractSet[i] && !rhsBatchSet[i] {
			outputChars = append(outputChars, rhsChars[i])
		}
	}

	// 2. Optimization: Use standard MatMul for 2D or batched matrix multiplication when contracting last dim of LHS and second-to-last dim of RHS
	var lastNode *Node
	batchAxesMatch := true
	if len(lhsBatchAxes) != len(rhsBatchAxes) {
		batchAxesMatch = false
	} else {
		for i, ba := range lhsBatchAxes {
			if rhsBatchAxes[i] != ba {
				batchAxesMatch = false
				break
			}
		}
	}
	isStandardMatMul := batchAxesMatch && len(lhsContractingAxes) == 1 && lhsContractingAxes[0] == lhsRank-1 &&
		len(rhsContractingAxes) == 1 && rhsContractingAxes[0] == rhsRank-2
	if isStandardMatMul {
		f.nodeCount++
		matmulNode := &Node{
			name:   fmt.Sprintf("node_%d", f.nodeCount),
			opType: "MatMul",
			inputs: []*Node{lhsInput, rhsInput},
			shape:  outShape,
		}
		f.nodes = append(f.nodes, matmulNode)
		lastNode = matmulNode
	} else if !f.builder.backend.session.einsum {
		// Added for mimlab: every other DotGeneral as Transpose/Reshape + one batched MatMul (as PyTorch's
		// matmul does), because ORT's Einsum kernel was 44% of a 196-token training step (BENCHMARKS.md).
		// "dot=einsum" in the config restores the Einsum below.
		mm, err := f.dotGeneralAsMatMul(lhsInput, lhsContractingAxes, lhsBatchAxes, rhsInput, rhsContractingAxes, rhsBatchAxes, outShape.Dimensions)
		if err != nil {
			return nil, err
		}
		lastNode = mm
	} else {
		// 3. Fallback: Generate Einsum equation
		equation := fmt.Sprintf("%s,%s->%s",
			strings.Join(lhsChars, ""),
			strings.Join(rhsChars, ""),
			strings.Join(outputChars, ""),
		)

		einsumShape := outShape
		einsumShape.DType = accumulationDType

		f.nodeCount++
		einsumNode := &Node{
			name:   fmt.Sprintf("node_%d", f.nodeCount),
			opType: "Einsum",
			inputs: []*Node{lhsInput, rhsInput},
			shape:  einsumShape,
			attributes: []*onnx.AttributeProto{
				{
					Name: "equation",
					Type: onnx.AttributeProto_STRING,
					S:    []byte(equation),
				},
			},
		}
		f.nodes = append(f.nodes, einsumNode)
		lastNode = einsumNode
	}
	if outShape.Rank() == 0 {
		newDimsConst, err := f.Constant([]int64{1}, 1)
		if err != nil {
			return nil, err
		}

		f.nodeCount++
		reshapeNode := &Node{
			name:   fmt.Sprintf("node_%d", f.nodeCount),
			opType: "Reshape",
			inputs: []*Node{lastNode, newDimsConst.(*Node)},
			shape:  outShape,
		}
		f.nodes = append(f.nodes, reshapeNode)
		lastNode = reshapeNode
	}

	// Cast to final output type if necessary
	var finalVal compute.Value = lastNode
	if accumulationDType != expectedOutputDType {
		casted, err := f.ConvertDType(lastNode, expectedOutputDType)
		if err != nil {
			return nil, err
		}
		finalVal = casted
	}

	return finalVal, nil
}

// dotGeneralAsMatMul (added for mimlab) lowers a DotGeneral to MatMul: lhs is transposed to
// [batch..., free..., contracting...] and reshaped to [B, M, K], rhs to [batch..., contracting..., free...]
// and [B, K, N]; the [B, M, N] product is reshaped to XLA's output order [batch..., lhs free..., rhs free...]
// (outDims). Transposes and reshapes that would not change anything are left out; without batch axes the
// product is 2-D. When only the last two axes of a side are swapped, ORT fuses the Transpose into its
// MatMul (FusedMatMul), so no copy is made.
func (f *Function) dotGeneralAsMatMul(lhs *Node, lhsContract, lhsBatch []int, rhs *Node, rhsContract, rhsBatch []int, outDims []int) (*Node, error) {
	free := func(rank int, used ...[]int) []int {
		in := make(map[int]bool)
		for _, u := range used {
			for _, a := range u {
				in[a] = true
			}
		}
		var out []int
		for i := 0; i < rank; i++ {
			if !in[i] {
				out = append(out, i)
			}
		}
		return out
	}
	size := func(n *Node, axes []int) int {
		p := 1
		for _, a := range axes {
			p *= n.shape.Dimensions[a]
		}
		return p
	}
	arrange := func(n *Node, perm []int, dims []int) (*Node, error) {
		v := n
		identity := true
		for i, p := range perm {
			if p != i {
				identity = false
			}
		}
		if !identity {
			t, err := f.Transpose(v, perm...)
			if err != nil {
				return nil, err
			}
			v = t.(*Node)
		}
		if !slices.Equal(v.shape.Dimensions, dims) {
			r, err := f.Reshape(v, dims...)
			if err != nil {
				return nil, err
			}
			v = r.(*Node)
		}
		return v, nil
	}
	lhsFree := free(lhs.shape.Rank(), lhsContract, lhsBatch)
	rhsFree := free(rhs.shape.Rank(), rhsContract, rhsBatch)
	b, m, k, n := size(lhs, lhsBatch), size(lhs, lhsFree), size(lhs, lhsContract), size(rhs, rhsFree)
	lhsDims, rhsDims := []int{m, k}, []int{k, n}
	switch {
	case len(lhsBatch) > 1 && len(lhsFree) == 1 && len(rhsFree) == 1 && len(lhsContract) == 1:
		// Each side already is [batch..., one free, one contracting] once transposed: keep its batch axes,
		// so no reshape is needed and a bare last-two-axes Transpose stays fusable into FusedMatMul.
		lhsDims = append(dimsOf(lhs, lhsBatch), m, k)
		rhsDims = append(dimsOf(rhs, rhsBatch), k, n)
	case len(lhsBatch) > 0:
		lhsDims, rhsDims = []int{b, m, k}, []int{b, k, n}
	}
	l, err := arrange(lhs, slices.Concat(lhsBatch, lhsFree, lhsContract), lhsDims)
	if err != nil {
		return nil, err
	}
	r, err := arrange(rhs, slices.Concat(rhsBatch, rhsContract, rhsFree), rhsDims)
	if err != nil {
		return nil, err
	}
	prodDims := append(append([]int{}, lhsDims[:len(lhsDims)-1]...), n)
	prodShape := lhs.shape.Clone()
	prodShape.Dimensions = prodDims
	f.nodeCount++
	mm := &Node{
		name:   fmt.Sprintf("node_%d", f.nodeCount),
		opType: "MatMul",
		inputs: []*Node{l, r},
		shape:  prodShape,
	}
	f.nodes = append(f.nodes, mm)
	if slices.Equal(prodDims, outDims) {
		return mm, nil
	}
	out, err := f.Reshape(mm, outDims...)
	if err != nil {
		return nil, err
	}
	return out.(*Node), nil
}

func dimsOf(n *Node, axes []int) []int {
	out := make([]int, len(axes))
	for i, a := range axes {
		out[i] = n.shape.Dimensions[a]
	}
	return out
}
