// Package nntest gives tests the execution backends to run on: the pure-Go backend always, ONNX Runtime
// when its library is present. With MIMLAB_REQUIRE_ORT=1 (set by .ci/run) a missing ONNX Runtime fails
// the test instead of skipping it, so CI never silently tests only one backend. MIMLAB_TEST_DEVICE=cuda
// (bench/gpu.sh, in a test binary built with -tags xla) adds the GPU to All, and a GPU that does not start
// fails the test.
package nntest

import (
	"fmt"
	"io"
	"os"
	"sync"
	"testing"

	"github.com/gomlx/compute"
	"mimlab/nn"
)

var (
	once     sync.Once
	goBE     compute.Backend
	ortBE    compute.Backend
	devBE    compute.Backend // $MIMLAB_TEST_DEVICE's backend, when set
	devName  string
	startErr error
)

// DeviceEnv names the extra backend All adds (cuda, or any --backend name).
const DeviceEnv = "MIMLAB_TEST_DEVICE"

func start() {
	var err error
	goBE, _, err = nn.NewBackend("go", io.Discard)
	if err != nil {
		startErr = err
		return
	}
	if nn.ORTAvailable() {
		if ortBE, _, startErr = nn.NewBackend("ort", io.Discard); startErr != nil {
			return
		}
	}
	if d := os.Getenv(DeviceEnv); d != "" {
		devBE, devName, startErr = nn.NewBackend(d, io.Discard)
		if startErr != nil {
			startErr = fmt.Errorf("$%s=%s: %w", DeviceEnv, d, startErr)
		}
	}
}

// Go returns the pure-Go backend (float64 capable).
func Go(t testing.TB) compute.Backend {
	t.Helper()
	once.Do(start)
	if startErr != nil {
		t.Fatal(startErr)
	}
	return goBE
}

// ORT returns the ONNX Runtime backend, or skips (fails under MIMLAB_REQUIRE_ORT=1) when it is missing.
func ORT(t testing.TB) compute.Backend {
	t.Helper()
	once.Do(start)
	if startErr != nil {
		t.Fatal(startErr)
	}
	if ortBE == nil {
		if os.Getenv("MIMLAB_REQUIRE_ORT") != "" {
			t.Fatalf("ONNX Runtime not found at %s (MIMLAB_REQUIRE_ORT is set): run `go run ./cmd/sweep fetch-ort`", nn.ORTLibraryPath())
		}
		t.Skipf("ONNX Runtime not found at %s: run `go run ./cmd/sweep fetch-ort`", nn.ORTLibraryPath())
	}
	return ortBE
}

// Named is a backend with its name.
type Named struct {
	Name    string
	Backend compute.Backend
}

// All returns go and, when available (required under MIMLAB_REQUIRE_ORT=1), ort, and the backend named by
// $MIMLAB_TEST_DEVICE when it is set (named as it resolved, e.g. "xla:cuda").
func All(t testing.TB) []Named {
	t.Helper()
	out := []Named{{"go", Go(t)}}
	once.Do(start)
	if ortBE != nil {
		out = append(out, Named{"ort", ortBE})
	} else if os.Getenv("MIMLAB_REQUIRE_ORT") != "" {
		t.Fatalf("ONNX Runtime not found at %s (MIMLAB_REQUIRE_ORT is set)", nn.ORTLibraryPath())
	}
	if devBE != nil && devName != "go" && devName != "ort" {
		out = append(out, Named{devName, devBE})
	}
	return out
}

// Device returns the backend of $MIMLAB_TEST_DEVICE and its resolved name, or go when it is unset.
func Device(t testing.TB) (compute.Backend, string) {
	t.Helper()
	be := Go(t)
	if devBE != nil {
		return devBE, devName
	}
	return be, "go"
}
