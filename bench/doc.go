// Package bench holds mimlab's benchmarks and the PyTorch reference models they are compared with. Nothing
// here runs in CI: `go test ./...` skips benchmarks, and the scripts (block.sh, ...) are run by hand.
package bench
