package npy

import (
	"path/filepath"
	"slices"
	"testing"
)

func TestRoundTrip(t *testing.T) {
	p := filepath.Join(t.TempDir(), "a.npy")
	in := []float32{1, 2, 3, 4, 5, 6}
	if err := WriteFloat32(p, in, 2, 3); err != nil {
		t.Fatal(err)
	}
	out, shape, err := ReadFloat32(p)
	if err != nil || !slices.Equal(out, in) || !slices.Equal(shape, []int{2, 3}) {
		t.Fatalf("%v %v %v", out, shape, err)
	}
	if err := WriteInt64(filepath.Join(t.TempDir(), "b.npy"), []int64{1, 2}, 2); err != nil {
		t.Fatal(err)
	}
}
