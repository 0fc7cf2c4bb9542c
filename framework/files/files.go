// Package files opens files whose bytes mimlab does not trust (weights, arrays, images): regular files only,
// so that a FIFO, a device such as /dev/zero or a directory is an error naming the path, never a hang or an
// endless read.
package files

import (
	"fmt"
	"os"
)

// OpenRegular opens path for reading if it is a regular file, and returns its size. The file is stat'ed
// before it is opened (opening a FIFO blocks) and checked to be the same file after.
func OpenRegular(path string) (*os.File, int64, error) {
	st, err := os.Stat(path)
	if err != nil {
		return nil, 0, err
	}
	if !st.Mode().IsRegular() {
		return nil, 0, fmt.Errorf("%s: not a regular file (mode %v)", path, st.Mode())
	}
	f, err := os.Open(path)
	if err != nil {
		return nil, 0, err
	}
	if fst, err := f.Stat(); err != nil || !os.SameFile(st, fst) {
		f.Close()
		return nil, 0, fmt.Errorf("%s: file changed while being opened", path)
	}
	return f, st.Size(), nil
}
