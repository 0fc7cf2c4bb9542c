// Package npy writes and reads NumPy .npy files, so that exported features open with numpy.load. It writes
// format 1.0, little-endian float32 and int64; it reads formats 1.0 and 2.0 with dtypes '<f4', '<f8' and '<i8'
// (C or Fortran order) from regular files only, checking the header and the data size before allocating.
package npy

import (
	"bytes"
	"encoding/binary"
	"fmt"
	"io"
	"math"
	"mimlab/framework/files"
	"strconv"
	"strings"
)

func header(descr string, shape []int) []byte {
	dims := make([]string, len(shape))
	for i, d := range shape {
		dims[i] = strconv.Itoa(d)
	}
	sh := strings.Join(dims, ", ")
	if len(shape) == 1 {
		sh += ","
	}
	h := fmt.Sprintf("{'descr': '%s', 'fortran_order': False, 'shape': (%s), }", descr, sh)
	pad := 64 - (10+len(h)+1)%64
	h += strings.Repeat(" ", pad%64) + "\n"
	var b bytes.Buffer
	b.WriteString("\x93NUMPY\x01\x00")
	binary.Write(&b, binary.LittleEndian, uint16(len(h)))
	b.WriteString(h)
	return b.Bytes()
}

func write(path string, hdr []byte, data any, n int, shape []int) error {
	if want, err := elems(shape, 8); err != nil || want != n {
		return fmt.Errorf("%s: %d values for shape %v", path, n, shape)
	}
	var b bytes.Buffer
	b.Write(hdr)
	if err := binary.Write(&b, binary.LittleEndian, data); err != nil {
		return err
	}
	return files.WriteAtomic(path, func(w io.Writer) error {
		_, err := w.Write(b.Bytes())
		return err
	})
}

// WriteFloat32 writes a float32 array of the given shape.
func WriteFloat32(path string, data []float32, shape ...int) error {
	return write(path, header("<f4", shape), data, len(data), shape)
}

// WriteInt64 writes an int64 array of the given shape.
func WriteInt64(path string, data []int64, shape ...int) error {
	return write(path, header("<i8", shape), data, len(data), shape)
}

// MaxHeaderBytes caps the header of a .npy file read (a dict of a few dozen bytes in practice).
const MaxHeaderBytes = 1 << 20

// Array is an array read from a .npy file: its dtype, its shape and its values in C order, in the slice
// that matches the dtype (the others are nil).
type Array struct {
	Descr string // '<f4', '<f8' or '<i8'
	Shape []int
	F32   []float32
	F64   []float64
	I64   []int64
}

// itemSizes are the dtypes the reader knows and their sizes in bytes.
var itemSizes = map[string]int{"<f4": 4, "<f8": 8, "<i8": 8}

// ReadFloat32 reads a float32 ('<f4') .npy file.
func ReadFloat32(path string) ([]float32, []int, error) {
	a, err := ReadFile(path)
	if err != nil {
		return nil, nil, err
	}
	if a.Descr != "<f4" {
		return nil, nil, fmt.Errorf("%s: dtype %s, not float32 ('<f4')", path, a.Descr)
	}
	return a.F32, a.Shape, nil
}

// ReadFile reads a .npy file. The path must name a regular file: a directory, FIFO or device is an error,
// not a hang.
func ReadFile(path string) (*Array, error) {
	f, size, err := files.OpenRegular(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	return Read(path, f, size)
}

// Read reads a .npy stream of exactly size bytes; name is used in errors. The header is parsed and the data
// size (shape product x item size, overflow checked) must equal the bytes after it before anything is
// allocated.
func Read(name string, r io.Reader, size int64) (*Array, error) {
	h, start, err := readHeader(r, size)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", name, err)
	}
	a, fortran, err := parseHeader(h)
	if err != nil {
		if h = strings.TrimRight(h, " \n"); len(h) > 200 {
			h = h[:200] + "..."
		}
		return nil, fmt.Errorf("%s: header %q: %w", name, h, err)
	}
	item := itemSizes[a.Descr]
	n, err := elems(a.Shape, item)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", name, err)
	}
	if int64(n*item) != size-start {
		return nil, fmt.Errorf("%s: shape %v of %s needs %d data bytes but the file has %d after the header", name, a.Shape, a.Descr, n*item, size-start)
	}
	if err := readData(r, a, n); err != nil {
		return nil, fmt.Errorf("%s: reading %d values: %w", name, n, err)
	}
	if fortran {
		a.F32, a.F64, a.I64 = cOrder(a.F32, a.Shape), cOrder(a.F64, a.Shape), cOrder(a.I64, a.Shape)
	}
	return a, nil
}

// readHeader reads the magic string, the version and the header; start is the offset of the data.
func readHeader(r io.Reader, size int64) (h string, start int64, err error) {
	var pre [12]byte
	if size < 10 {
		return "", 0, fmt.Errorf("not a .npy file (%d bytes)", size)
	}
	if _, err := io.ReadFull(r, pre[:10]); err != nil {
		return "", 0, err
	}
	if string(pre[:6]) != "\x93NUMPY" {
		return "", 0, fmt.Errorf("not a .npy file (no \\x93NUMPY magic)")
	}
	var hl uint64
	switch pre[6] {
	case 1:
		hl, start = uint64(binary.LittleEndian.Uint16(pre[8:10])), 10
	case 2:
		if size < 12 {
			return "", 0, fmt.Errorf("truncated .npy header")
		}
		if _, err := io.ReadFull(r, pre[10:12]); err != nil {
			return "", 0, err
		}
		hl, start = uint64(binary.LittleEndian.Uint32(pre[8:12])), 12
	default:
		return "", 0, fmt.Errorf(".npy format %d.%d not supported (1.0 and 2.0)", pre[6], pre[7])
	}
	if hl > MaxHeaderBytes || int64(hl) > size-start {
		return "", 0, fmt.Errorf("header length %d exceeds the file (%d bytes) or the limit of %d bytes", hl, size, MaxHeaderBytes)
	}
	buf := make([]byte, hl)
	if _, err := io.ReadFull(r, buf); err != nil {
		return "", 0, err
	}
	return string(buf), start + int64(hl), nil
}

// elems is the product of the dimensions, checked so that it times itemSize fits an int.
func elems(shape []int, itemSize int) (int, error) {
	n := 1
	for _, d := range shape {
		if d < 0 {
			return 0, fmt.Errorf("shape %v: negative dimension", shape)
		}
		if d != 0 && n > math.MaxInt/itemSize/d {
			return 0, fmt.Errorf("shape %v: too many elements (the byte size overflows)", shape)
		}
		n *= d
	}
	return n, nil
}

// readData reads n little-endian values of a's dtype, 64 KiB at a time.
func readData(r io.Reader, a *Array, n int) error {
	item := itemSizes[a.Descr]
	switch a.Descr {
	case "<f4":
		a.F32 = make([]float32, n)
	case "<f8":
		a.F64 = make([]float64, n)
	case "<i8":
		a.I64 = make([]int64, n)
	}
	buf := make([]byte, 1<<16)
	for i := 0; i < n; {
		k := min(n-i, len(buf)/item)
		b := buf[:k*item]
		if _, err := io.ReadFull(r, b); err != nil {
			return err
		}
		for j := 0; j < k; j++ {
			switch a.Descr {
			case "<f4":
				a.F32[i+j] = math.Float32frombits(binary.LittleEndian.Uint32(b[4*j:]))
			case "<f8":
				a.F64[i+j] = math.Float64frombits(binary.LittleEndian.Uint64(b[8*j:]))
			case "<i8":
				a.I64[i+j] = int64(binary.LittleEndian.Uint64(b[8*j:]))
			}
		}
		i += k
	}
	return nil
}

// cOrder reorders values stored in Fortran order (first index fastest) into C order (last index fastest).
func cOrder[T any](v []T, shape []int) []T {
	if len(shape) < 2 || len(v) == 0 {
		return v
	}
	stride := make([]int, len(shape)) // Fortran strides
	s := 1
	for i, d := range shape {
		stride[i] = s
		s *= d
	}
	out := make([]T, len(v))
	idx := make([]int, len(shape))
	for c := range out {
		off := 0
		for i, x := range idx {
			off += x * stride[i]
		}
		out[c] = v[off]
		for i := len(idx) - 1; i >= 0; i-- {
			if idx[i]++; idx[i] < shape[i] {
				break
			}
			idx[i] = 0
		}
	}
	return out
}

// maxDims is the most dimensions a shape may have (NumPy's own limit is 64).
const maxDims = 64

// parseHeader parses the header, a Python dict literal such as
// {'descr': '<f4', 'fortran_order': False, 'shape': (2, 3), }: the three keys, each once, in any order.
func parseHeader(h string) (a *Array, fortran bool, err error) {
	p := &lexer{s: h}
	if !p.eat('{') {
		return nil, false, fmt.Errorf("not a dict")
	}
	a = &Array{}
	seen := map[string]bool{}
	for !p.eat('}') {
		key, err := p.str()
		if err != nil {
			return nil, false, fmt.Errorf("key: %w", err)
		}
		if seen[key] {
			return nil, false, fmt.Errorf("key %q twice", key)
		}
		seen[key] = true
		if !p.eat(':') {
			return nil, false, fmt.Errorf("no ':' after %q", key)
		}
		switch key {
		case "descr":
			a.Descr, err = p.str()
			if _, ok := itemSizes[a.Descr]; err == nil && !ok {
				err = fmt.Errorf("dtype %q not supported ('<f4', '<f8', '<i8')", a.Descr)
			}
		case "fortran_order":
			fortran, err = p.boolean()
		case "shape":
			a.Shape, err = p.tuple()
		default:
			err = fmt.Errorf("unknown key %q", key)
		}
		if err != nil {
			return nil, false, fmt.Errorf("%s: %w", key, err)
		}
		if !p.eat(',') && !p.peek('}') {
			return nil, false, fmt.Errorf("want ',' or '}' after %s", key)
		}
	}
	if p.skip(); p.i != len(p.s) {
		return nil, false, fmt.Errorf("text after the dict")
	}
	if !seen["descr"] || !seen["fortran_order"] || !seen["shape"] {
		return nil, false, fmt.Errorf("want the keys descr, fortran_order and shape")
	}
	return a, fortran, nil
}

// lexer reads the tokens of a header dict; every method skips the white space before its token.
type lexer struct {
	s string
	i int
}

func (p *lexer) skip() {
	for p.i < len(p.s) && strings.IndexByte(" \t\r\n", p.s[p.i]) >= 0 {
		p.i++
	}
}

func (p *lexer) peek(c byte) bool {
	p.skip()
	return p.i < len(p.s) && p.s[p.i] == c
}

func (p *lexer) eat(c byte) bool {
	if p.peek(c) {
		p.i++
		return true
	}
	return false
}

// str reads a string quoted with ' or " (no escapes).
func (p *lexer) str() (string, error) {
	p.skip()
	if p.i >= len(p.s) || (p.s[p.i] != '\'' && p.s[p.i] != '"') {
		return "", fmt.Errorf("want a quoted string")
	}
	q := p.s[p.i]
	end := strings.IndexByte(p.s[p.i+1:], q)
	if end < 0 {
		return "", fmt.Errorf("unterminated string")
	}
	v := p.s[p.i+1 : p.i+1+end]
	p.i += end + 2
	return v, nil
}

func (p *lexer) boolean() (bool, error) {
	p.skip()
	for _, w := range []string{"True", "False"} {
		if strings.HasPrefix(p.s[p.i:], w) {
			p.i += len(w)
			return w == "True", nil
		}
	}
	return false, fmt.Errorf("want True or False")
}

// tuple reads a tuple of non-negative integers: (), (3,), (3) or (2, 3).
func (p *lexer) tuple() ([]int, error) {
	if !p.eat('(') {
		return nil, fmt.Errorf("want a tuple")
	}
	shape := []int{}
	for !p.eat(')') {
		p.skip()
		j := p.i
		for j < len(p.s) && p.s[j] >= '0' && p.s[j] <= '9' {
			j++
		}
		d, err := strconv.Atoi(p.s[p.i:j])
		if err != nil {
			return nil, fmt.Errorf("want a non-negative integer at %q", p.s[p.i:min(j+1, len(p.s))])
		}
		if shape = append(shape, d); len(shape) > maxDims {
			return nil, fmt.Errorf("more than %d dimensions", maxDims)
		}
		p.i = j
		if p.i < len(p.s) && p.s[p.i] == 'L' { // Python 2 long
			p.i++
		}
		if !p.eat(',') && !p.peek(')') {
			return nil, fmt.Errorf("want ',' or ')'")
		}
	}
	return shape, nil
}
