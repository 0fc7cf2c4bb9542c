package nn

import (
	"io"
	"os"
	"sync"
	"testing"

	"github.com/gomlx/compute"
)

// Test backends of this package (nntest cannot be imported here: it imports nn).
var (
	beOnce      sync.Once
	beGo, beORT compute.Backend
	beErr       error
)

func startBackends() {
	beGo, _, beErr = NewBackend("go", io.Discard)
	if beErr == nil && ORTAvailable() {
		beORT, _, beErr = NewBackend("ort", io.Discard)
	}
}

func goBackend(t testing.TB) compute.Backend {
	t.Helper()
	beOnce.Do(startBackends)
	if beErr != nil {
		t.Fatal(beErr)
	}
	return beGo
}

type namedBackend struct {
	name string
	be   compute.Backend
}

func allBackends(t testing.TB) []namedBackend {
	t.Helper()
	out := []namedBackend{{"go", goBackend(t)}}
	if beORT != nil {
		out = append(out, namedBackend{"ort", beORT})
	} else if os.Getenv("MIMLAB_REQUIRE_ORT") != "" {
		t.Fatalf("ONNX Runtime not found at %s (MIMLAB_REQUIRE_ORT is set)", ORTLibraryPath())
	} else {
		t.Logf("ONNX Runtime not found at %s: testing the go backend only", ORTLibraryPath())
	}
	return out
}

// ortBackend is the ort test backend; the test skips (fails under MIMLAB_REQUIRE_ORT) without ONNX Runtime,
// saying why it needs it.
func ortBackend(t testing.TB, why string) compute.Backend {
	t.Helper()
	goBackend(t) // starts both backends
	if beORT == nil {
		if os.Getenv("MIMLAB_REQUIRE_ORT") != "" {
			t.Fatalf("ONNX Runtime not found at %s (MIMLAB_REQUIRE_ORT is set)", ORTLibraryPath())
		}
		t.Skip("ONNX Runtime not found: " + why)
	}
	return beORT
}
