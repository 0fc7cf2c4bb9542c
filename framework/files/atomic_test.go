package files

import (
	"io"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
)

// RemoveTemps removes what a killed WriteAtomic leaves and nothing else.
func TestRemoveTemps(t *testing.T) {
	dir := t.TempDir()
	keep := []string{"checkpoint.safetensors", "owner.json", ".hidden", "notes.tmp-1"}
	for _, n := range keep {
		if err := os.WriteFile(filepath.Join(dir, n), []byte("x"), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	if err := os.Mkdir(filepath.Join(dir, ".sub.tmp-9"), 0o755); err != nil { // a folder: not WriteAtomic's
		t.Fatal(err)
	}
	// A writer killed mid-write: create the temporary file the way WriteAtomic does and leave it.
	f, err := os.CreateTemp(dir, ".checkpoint.safetensors.tmp-*")
	if err != nil {
		t.Fatal(err)
	}
	f.Close()
	left := filepath.Base(f.Name())
	// A completed WriteAtomic leaves nothing.
	if err := WriteAtomic(filepath.Join(dir, "encoder.safetensors"), func(w io.Writer) error { _, err := w.Write([]byte("y")); return err }); err != nil {
		t.Fatal(err)
	}
	gone, err := RemoveTemps(dir)
	if err != nil || !slices.Equal(gone, []string{left}) {
		t.Fatalf("RemoveTemps = %v, %v; want [%s]", gone, err, left)
	}
	entries, _ := os.ReadDir(dir)
	var names []string
	for _, e := range entries {
		names = append(names, e.Name())
	}
	want := append(slices.Clone(keep), ".sub.tmp-9", "encoder.safetensors")
	slices.Sort(want)
	if !slices.Equal(names, want) {
		t.Errorf("left %v, want %v", names, want)
	}
}

// A folder that cannot be written: the error names the file asked for, not the hidden temporary name.
func TestWriteAtomicNamesTheTarget(t *testing.T) {
	dir := "/proc" // read-only even for root
	if os.Geteuid() != 0 {
		dir = t.TempDir()
		os.Chmod(dir, 0o555)
		t.Cleanup(func() { os.Chmod(dir, 0o755) })
	}
	target := filepath.Join(dir, "evals.csv")
	err := WriteAtomic(target, func(w io.Writer) error { _, err := w.Write([]byte("x")); return err })
	if err == nil {
		t.Fatalf("wrote %s", target)
	}
	if !strings.Contains(err.Error(), target) || strings.Contains(err.Error(), ".tmp-") {
		t.Errorf("%v: want the target %s named, not the temporary file", err, target)
	}
}
