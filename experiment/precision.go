package experiment

import (
	"fmt"

	"mimlab/nn"
)

// CheckPrecision refuses a spec whose trials ask for a train.precision that the backend they would run on
// cannot run (nn.CheckPrecision: bf16 on ort), naming the spec file. backend is the resolved backend name
// when known; "" judges the name the options give the spec, with "auto" standing for what it picks on this
// machine (ort when ONNX Runtime is installed).
func (o ExecOptions) CheckPrecision(p Planned, backend string) error {
	if backend == "" {
		backend = o.BackendFor(p)
		if backend == "auto" || backend == "" {
			backend = "go"
			if nn.ORTAvailable() {
				backend = "ort"
			}
		}
	}
	for _, t := range p.Trials {
		prec := nn.Precision(Typed(t.Resolved).Train.Precision)
		if err := nn.CheckPrecision(backend, prec); err != nil {
			return fmt.Errorf("%s: %w", p.Raw.File, err)
		}
	}
	return nil
}
