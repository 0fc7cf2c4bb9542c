//go:build !xla

package nn

import (
	"fmt"

	"github.com/gomlx/compute"
)

// newXLABackend is the stub of builds without the xla tag: the GPU path needs cgo and a PJRT plugin, so it is
// opt-in (see README, "GPU").
func newXLABackend(name string) (compute.Backend, string, error) {
	return nil, "", fmt.Errorf("backend %s: this binary was built without GPU support; rebuild with `-tags xla` on a machine with a PJRT CUDA plugin (see README, GPU)", name)
}
