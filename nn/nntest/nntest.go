// Package nntest gives tests the execution backends to run on: the pure-Go backend always, ONNX Runtime
// when its library is present. With MIMLAB_REQUIRE_ORT=1 (set by .ci/run) a missing ONNX Runtime fails
// the test instead of skipping it, so CI never silently tests only one backend.
package nntest

import (
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
	startErr error
)

func start() {
	var err error
	goBE, _, err = nn.NewBackend("go", io.Discard)
	if err != nil {
		startErr = err
		return
	}
	if nn.ORTAvailable() {
		ortBE, _, startErr = nn.NewBackend("ort", io.Discard)
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

// All returns go and, when available (required under MIMLAB_REQUIRE_ORT=1), ort.
func All(t testing.TB) []Named {
	t.Helper()
	out := []Named{{"go", Go(t)}}
	once.Do(start)
	if ortBE != nil {
		out = append(out, Named{"ort", ortBE})
	} else if os.Getenv("MIMLAB_REQUIRE_ORT") != "" {
		t.Fatalf("ONNX Runtime not found at %s (MIMLAB_REQUIRE_ORT is set)", nn.ORTLibraryPath())
	}
	return out
}
