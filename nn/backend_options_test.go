package nn

import (
	"io"
	"strings"
	"testing"

	"github.com/gomlx/compute/dtypes"
	"github.com/gomlx/compute/shapes"
	. "github.com/gomlx/gomlx/core/graph"
)

// TestORTSessionOptions: the ONNX Runtime session options mimlab sets (threads per trial, no spinning,
// and the levers of $MIMLAB_ORT_OPTIONS) change how a graph runs, never what it computes; a bad option is
// an error that names it and the allowed keys.
func TestORTSessionOptions(t *testing.T) {
	if !ORTAvailable() {
		t.Skip("ONNX Runtime not found")
	}
	c := tinyViT()
	shp := []shapes.Shape{shapes.Make(dtypes.Float32, 3, 1, 12, 12), shapes.Make(dtypes.Int64, 3, 6)}
	fwd := func(s Scope, d []*Node) []*Node {
		return []*Node{ViT(s.Sub("encoder"), c, ViTInput{Patches: Patchify(d[0], c.PatchSize), Keep: d[1]})}
	}
	run := func(o BackendOptions, env string) []float32 {
		t.Helper()
		t.Setenv(ORTOptionsEnv, env)
		be, _, err := NewBackendWith("ort", o, io.Discard)
		if err != nil {
			t.Fatal(err)
		}
		ps, err := Declare(be, dtypes.Float32, false, shp, fwd)
		if err != nil {
			t.Fatal(err)
		}
		prog, err := Compile(be, ps, dtypes.Float32, false, shp, fwd)
		if err != nil {
			t.Fatal(err)
		}
		defer prog.Finalize()
		o2, err := prog.Run(ps.InitParams(dtypes.Float32, 9), nil, randImages(2, 3, 1, 12), keepIdx(3, 6))
		if err != nil {
			t.Fatal(err)
		}
		return Float32s(o2[0])
	}
	base := run(BackendOptions{}, "")
	for _, tc := range []struct {
		name string
		o    BackendOptions
		env  string
	}{
		{"1 thread, no spinning", BackendOptions{Threads: 1}, ""},
		{"2 threads", BackendOptions{Threads: 2}, ""},
		{"no memory pattern, no arena", BackendOptions{Threads: 1}, "mem_pattern=0,arena=0,inter_threads=1"},
	} {
		got := run(tc.o, tc.env)
		for i := range base {
			if d := got[i] - base[i]; d > 1e-5 || d < -1e-5 {
				t.Fatalf("%s: output %d is %v, with ORT's defaults %v", tc.name, i, got[i], base[i])
			}
		}
	}
	if got := (BackendOptions{Threads: 3}).ORTConfig(); !strings.Contains(got, "threads=3,spin=0") {
		t.Errorf("ORTConfig = %q, want threads=3,spin=0 in it", got)
	}
	for _, bad := range []string{"threads=x", "spin=maybe", "fast=1"} {
		t.Setenv(ORTOptionsEnv, bad)
		_, _, err := NewBackendWith("ort", BackendOptions{}, io.Discard)
		if err == nil {
			t.Fatalf("%s=%q: no error", ORTOptionsEnv, bad)
		}
		key := strings.SplitN(bad, "=", 2)[0]
		if !strings.Contains(err.Error(), key) || !strings.Contains(err.Error(), ORTOptionsEnv) {
			t.Errorf("%s=%q: error %q does not name the option and the variable", ORTOptionsEnv, bad, err)
		}
	}
}
