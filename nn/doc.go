// Package nn holds the ViT building blocks of mimlab on the GoMLX engine: patch embedding, the fixed
// 2-D sin-cos position table, the pre-LN ViT block, the CAE regressor's cross-attention block, token
// gather/scatter, losses, AdamW with its schedule and clipping, safetensors weight I/O, and the choice of
// execution backend (ort, go, xla).
//
// A model is one Go function that builds its graph through a Scope: the first, dry build declares the
// parameters (names, shapes, initialisers) in a fixed order; later builds receive them as graph inputs.
// The model is therefore written once and its parameter list can never disagree with its graph.
//
// Invariants this package keeps:
//   - every block follows reference/cae-facts.md sections 1.2-1.7 (LayerNorm eps 1e-6, exact GELU, q and v
//     biases without a k bias, LayerScale, drop path, xavier-uniform Linear layers);
//   - every gather or scatter uses int64 indices (ONNX Runtime's ScatterND rejects int32) and no
//     differentiated path uses Slice (its gradient needs Pad, which ONNX Runtime lacks);
//   - every random number comes from a seeded source the caller names.
//
// Only this package and components/ touch GoMLX types.
package nn
