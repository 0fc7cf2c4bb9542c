package data

import (
	"bufio"
	"compress/gzip"
	"encoding/binary"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
)

// readIDX reads an idx file (gzipped when its name ends in .gz): magic 0x0000 08 <ndim>, big-endian dims,
// then uint8 data.
func readIDX(path string) (dims []int, data []byte, err error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, nil, err
	}
	defer f.Close()
	var r io.Reader = bufio.NewReader(f)
	if strings.HasSuffix(path, ".gz") {
		zr, err := gzip.NewReader(r)
		if err != nil {
			return nil, nil, fmt.Errorf("%s: corrupt gzip: %w", path, err)
		}
		r = zr
	}
	var magic [4]byte
	if _, err := io.ReadFull(r, magic[:]); err != nil {
		return nil, nil, fmt.Errorf("%s: corrupt idx file (no header): %w", path, err)
	}
	if magic[0] != 0 || magic[1] != 0 || magic[2] != 8 || magic[3] < 1 || magic[3] > 4 {
		return nil, nil, fmt.Errorf("%s: not an idx file of uint8 (magic % x)", path, magic)
	}
	n := 1
	for i := 0; i < int(magic[3]); i++ {
		var d uint32
		if err := binary.Read(r, binary.BigEndian, &d); err != nil {
			return nil, nil, fmt.Errorf("%s: corrupt idx header: %w", path, err)
		}
		if d == 0 || d > 1<<26 {
			return nil, nil, fmt.Errorf("%s: corrupt idx header (dimension %d)", path, d)
		}
		dims = append(dims, int(d))
		n *= int(d)
	}
	data = make([]byte, n)
	if _, err := io.ReadFull(r, data); err != nil {
		return nil, nil, fmt.Errorf("%s: corrupt idx file (truncated data, want %d bytes): %w", path, n, err)
	}
	return dims, data, nil
}

// idxSplit is one split of an idx dataset as read: uint8 pixels and labels, converted to float32 only for
// the images a run keeps (MNIST's 70,000 images as float32 are 220 MB, which Go's heap then kept from the
// OS for the whole run: BENCHMARKS.md, issue 18).
type idxSplit struct {
	pix    []byte
	labels []int
	n      int
}

// floats converts the images idx (all of them when idx is nil) to a Split in [0, 1].
func (r idxSplit) floats(idx []int, size int) Split {
	if idx == nil {
		idx = make([]int, r.n)
		for i := range idx {
			idx[i] = i
		}
	}
	n := size * size
	s := Split{Images: make([]float32, len(idx)*n), Labels: make([]int, len(idx)), N: len(idx)}
	for k, i := range idx {
		for j, b := range r.pix[i*n : (i+1)*n] {
			s.Images[k*n+j] = float32(b) / 255
		}
		s.Labels[k] = r.labels[i]
	}
	return s
}

// loadIDXPair reads <prefix>-images-idx3-ubyte(.gz) and <prefix>-labels-idx1-ubyte(.gz) from dir.
func loadIDXPair(dir, prefix string) (idxSplit, int, error) {
	find := func(base string) (string, error) {
		for _, p := range []string{base + ".gz", base} {
			if _, err := os.Stat(filepath.Join(dir, p)); err == nil {
				return filepath.Join(dir, p), nil
			}
		}
		return "", fmt.Errorf("%s(.gz) not found in %s", base, dir)
	}
	ip, err := find(prefix + "-images-idx3-ubyte")
	if err != nil {
		return idxSplit{}, 0, err
	}
	lp, err := find(prefix + "-labels-idx1-ubyte")
	if err != nil {
		return idxSplit{}, 0, err
	}
	idims, img, err := readIDX(ip)
	if err != nil {
		return idxSplit{}, 0, err
	}
	ldims, lab, err := readIDX(lp)
	if err != nil {
		return idxSplit{}, 0, err
	}
	if len(idims) != 3 || len(ldims) != 1 || idims[0] != ldims[0] || idims[1] != idims[2] {
		return idxSplit{}, 0, fmt.Errorf("%s / %s: shapes %v and %v do not match (want [N,S,S] and [N])", ip, lp, idims, ldims)
	}
	s := idxSplit{pix: img, labels: make([]int, len(lab)), n: idims[0]}
	for i, l := range lab {
		if l > 9 {
			return idxSplit{}, 0, fmt.Errorf("%s: label %d at %d is not a digit class 0-9", lp, l, i)
		}
		s.labels[i] = int(l)
	}
	return s, idims[1], nil
}
