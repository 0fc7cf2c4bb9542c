package files

import (
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
)

// WriteAtomic writes path as a whole or not at all, also on a shared file system (NFS, Lustre) read by
// workers on other hosts: the bytes go to a uniquely named temporary file in the same folder (two writers
// never share one), which is fsynced, renamed over path, and the folder fsynced, so a reader sees the old
// file or the new one, never half of one.
func WriteAtomic(path string, write func(w io.Writer) error) (err error) {
	dir := filepath.Dir(path)
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return err
	}
	f, err := os.CreateTemp(dir, "."+filepath.Base(path)+".tmp-*")
	if err != nil {
		// The error names the target, not the hidden temporary name the user never asked for.
		var pe *fs.PathError
		if errors.As(err, &pe) {
			return &fs.PathError{Op: "write", Path: path, Err: pe.Err}
		}
		return fmt.Errorf("writing %s: %w", path, err)
	}
	defer func() {
		if err != nil {
			f.Close()
			os.Remove(f.Name())
		}
	}()
	if err := write(f); err != nil {
		return fmt.Errorf("writing %s: %w", path, err)
	}
	if err := f.Chmod(0o644); err != nil {
		return err
	}
	if err := f.Sync(); err != nil {
		return fmt.Errorf("writing %s: %w", path, err)
	}
	if err := f.Close(); err != nil {
		return fmt.Errorf("writing %s: %w", path, err)
	}
	if err := os.Rename(f.Name(), path); err != nil {
		var le *os.LinkError
		if errors.As(err, &le) {
			return &fs.PathError{Op: "write", Path: path, Err: le.Err}
		}
		return fmt.Errorf("writing %s: %w", path, err)
	}
	if d, derr := os.Open(dir); derr == nil { // the rename itself reaches the disk
		d.Sync()
		d.Close()
	}
	return nil
}

// RemoveTemps removes the temporary files WriteAtomic leaves in dir when its process is killed mid-write
// (".NAME.tmp-*"), and returns their names. Only a folder's single writer may call it (a trial's own folder,
// by the worker holding the trial): another writer's file in progress would be removed.
func RemoveTemps(dir string) ([]string, error) {
	entries, err := os.ReadDir(dir)
	if err != nil {
		return nil, err
	}
	var removed []string
	for _, e := range entries {
		n := e.Name()
		if !e.Type().IsRegular() || !strings.HasPrefix(n, ".") || !strings.Contains(n, ".tmp-") {
			continue
		}
		if err := os.Remove(filepath.Join(dir, n)); errors.Is(err, fs.ErrNotExist) {
			continue // gone meanwhile (its writer renamed or removed it)
		} else if err != nil {
			return removed, err
		}
		removed = append(removed, n)
	}
	return removed, nil
}
