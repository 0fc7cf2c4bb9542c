package npy

import (
	"bytes"
	"encoding/binary"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"
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

// What the writer writes, the reader reads back: values, shape and dtype.
func TestWriterOutputReadsBack(t *testing.T) {
	dir := t.TempDir()
	cases := []struct {
		name  string
		f32   []float32
		i64   []int64
		shape []int
	}{
		{"f4 2x3", []float32{1, 2, 3, 4, 5, -6}, nil, []int{2, 3}},
		{"f4 1-d", []float32{0.5, 1e30, -0}, nil, []int{3}},
		{"f4 scalar", []float32{7}, nil, nil},
		{"f4 empty 0x5", []float32{}, nil, []int{0, 5}},
		{"f4 2x1x2x1", []float32{1, 2, 3, 4}, nil, []int{2, 1, 2, 1}},
		{"i8 1-d", nil, []int64{7, -1, 1 << 62}, []int{3}},
		{"i8 3x1", nil, []int64{1, 2, 3}, []int{3, 1}},
	}
	for i, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			p := filepath.Join(dir, strings.Repeat("a", i+1)+".npy")
			var err error
			if c.i64 != nil {
				err = WriteInt64(p, c.i64, c.shape...)
			} else {
				err = WriteFloat32(p, c.f32, c.shape...)
			}
			if err != nil {
				t.Fatal(err)
			}
			a, err := ReadFile(p)
			if err != nil {
				t.Fatal(err)
			}
			want := "<f4"
			if c.i64 != nil {
				want = "<i8"
			}
			if a.Descr != want || !slices.Equal(a.Shape, append([]int{}, c.shape...)) || !slices.Equal(a.F32, c.f32) || !slices.Equal(a.I64, c.i64) || a.F64 != nil {
				t.Fatalf("got %+v", a)
			}
			raw, _ := os.ReadFile(p)
			if end := 10 + int(binary.LittleEndian.Uint16(raw[8:])); end%64 != 0 || raw[end-1] != '\n' {
				t.Fatalf("header not padded to 64 bytes and newline-terminated: %q", raw[:end])
			}
		})
	}
}

// The writer refuses data that does not fill the shape (it used to write a file no reader accepts).
func TestWriterChecksShape(t *testing.T) {
	p := filepath.Join(t.TempDir(), "bad.npy")
	if err := WriteFloat32(p, []float32{1, 2, 3, 4, 5}, 2, 3); err == nil || !strings.Contains(err.Error(), "5 values for shape [2 3]") {
		t.Fatalf("got %v", err)
	}
	if err := WriteInt64(p, []int64{1}, -1); err == nil {
		t.Fatal("negative dimension written")
	}
	if _, err := os.Stat(p); err == nil {
		t.Fatal("a file was written")
	}
}

// npyFile builds a .npy file of format version v (1 or 2) from a header dict and data bytes, padded like NumPy.
func npyFile(v byte, dict string, data []byte) []byte {
	pre := 10
	if v != 1 {
		pre = 12
	}
	h := dict + strings.Repeat(" ", (64-(pre+len(dict)+1)%64)%64) + "\n"
	b := []byte("\x93NUMPY")
	b = append(b, v, 0)
	if v == 1 {
		b = binary.LittleEndian.AppendUint16(b, uint16(len(h)))
	} else {
		b = binary.LittleEndian.AppendUint32(b, uint32(len(h)))
	}
	return append(append(b, h...), data...)
}

func le[T any](v ...T) []byte {
	b, _ := binary.Append(nil, binary.LittleEndian, v)
	return b
}

// Files as NumPy writes them: format 2.0, float64, Fortran order, double quotes, Python 2 longs.
func TestReadFormats(t *testing.T) {
	cases := []struct {
		name string
		file []byte
		want Array
	}{
		{"v2 f8", npyFile(2, `{'descr': '<f8', 'fortran_order': False, 'shape': (2,), }`, le(1.5, -2.0)),
			Array{Descr: "<f8", Shape: []int{2}, F64: []float64{1.5, -2}}},
		{"Fortran order 2x3", npyFile(1, `{'descr': '<i8', 'fortran_order': True, 'shape': (2, 3), }`, le[int64](1, 4, 2, 5, 3, 6)),
			Array{Descr: "<i8", Shape: []int{2, 3}, I64: []int64{1, 2, 3, 4, 5, 6}}},
		{"Fortran order 2x2x2", npyFile(1, `{'descr': '<f4', 'fortran_order': True, 'shape': (2, 2, 2), }`, le[float32](0, 4, 2, 6, 1, 5, 3, 7)),
			Array{Descr: "<f4", Shape: []int{2, 2, 2}, F32: []float32{0, 1, 2, 3, 4, 5, 6, 7}}},
		{"keys in another order, double quotes, Python 2 longs", npyFile(1, `{"shape": (1L, 2L), "fortran_order": False, "descr": "<f4"}`, le[float32](1, 2)),
			Array{Descr: "<f4", Shape: []int{1, 2}, F32: []float32{1, 2}}},
		{"scalar", npyFile(1, `{'descr': '<i8', 'fortran_order': False, 'shape': (), }`, le[int64](9)),
			Array{Descr: "<i8", Shape: []int{}, I64: []int64{9}}},
		{"empty", npyFile(1, `{'descr': '<f4', 'fortran_order': False, 'shape': (3, 0), }`, nil),
			Array{Descr: "<f4", Shape: []int{3, 0}, F32: []float32{}}},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			a, err := Read("x.npy", bytes.NewReader(c.file), int64(len(c.file)))
			if err != nil {
				t.Fatal(err)
			}
			if a.Descr != c.want.Descr || !slices.Equal(a.Shape, c.want.Shape) || !slices.Equal(a.F32, c.want.F32) || !slices.Equal(a.F64, c.want.F64) || !slices.Equal(a.I64, c.want.I64) {
				t.Fatalf("got %+v, want %+v", a, c.want)
			}
		})
	}
}

// Malformed files are errors naming the file, never a panic (several used to be: a header length past the
// file, no shape, a negative or overflowing shape).
func TestReadRejectsBadFiles(t *testing.T) {
	f4 := func(shape string, data []byte) []byte {
		return npyFile(1, `{'descr': '<f4', 'fortran_order': False, 'shape': `+shape+`, }`, data)
	}
	longHeader := []byte("\x93NUMPY\x01\x00\xff\xff{'descr'")
	cases := []struct {
		name string
		file []byte
		want string
	}{
		{"header length past the file", longHeader, "header length 65535 exceeds the file"},
		{"v2 header length 2^32-1", append([]byte("\x93NUMPY\x02\x00\xff\xff\xff\xff"), make([]byte, 64)...), "header length 4294967295 exceeds"},
		{"format 3.0", npyFile(3, `{'descr': '<f4', 'fortran_order': False, 'shape': (), }`, le[float32](1)), "format 3.0 not supported"},
		{"no magic", []byte("PK\x03\x04 this is a zip, not an npy"), "no \\x93NUMPY magic"},
		{"too short", []byte("\x93NUMPY"), "not a .npy file"},
		{"no shape key", npyFile(1, `{'descr': '<f4', 'fortran_order': False, }`, le[float32](1)), "want the keys descr, fortran_order and shape"},
		{"shape 2^62", f4("(4611686018427387904,)", nil), "too many elements"},
		{"shape product wraps to 0", f4("(4611686018427387904, 4)", nil), "too many elements"},
		{"shape past int64", f4("(99999999999999999999,)", nil), "want a non-negative integer"},
		{"negative dimension", f4("(-1,)", le[float32](1)), "want a non-negative integer"},
		{"65 dimensions", f4("("+strings.Repeat("1, ", 65)+")", le[float32](1)), "more than 64 dimensions"},
		{"data shorter than the shape", f4("(2, 3)", le[float32](1, 2, 3)), "needs 24 data bytes but the file has 12"},
		{"data longer than the shape", f4("(2,)", le[float32](1, 2, 3)), "needs 8 data bytes but the file has 12"},
		{"big-endian", npyFile(1, `{'descr': '>f4', 'fortran_order': False, 'shape': (1,), }`, le[float32](1)), `dtype ">f4" not supported`},
		{"object dtype", npyFile(1, `{'descr': '|O', 'fortran_order': False, 'shape': (1,), }`, le[int64](1)), `dtype "|O" not supported`},
		{"unknown key", npyFile(1, `{'descr': '<f4', 'fortran_order': False, 'shape': (1,), 'x': 1}`, le[float32](1)), `unknown key "x"`},
		{"key twice", npyFile(1, `{'descr': '<f4', 'descr': '<f4', 'fortran_order': False, 'shape': (1,)}`, le[float32](1)), `key "descr" twice`},
		{"fortran_order not a bool", npyFile(1, `{'descr': '<f4', 'fortran_order': 0, 'shape': (1,)}`, le[float32](1)), "want True or False"},
		{"unterminated string", npyFile(1, `{'descr': '<f4`, nil), "unterminated string"},
		{"text after the dict", npyFile(1, `{'descr': '<f4', 'fortran_order': False, 'shape': (1,)} x`, le[float32](1)), "text after the dict"},
		{"not a dict", npyFile(1, `['descr']`, nil), "not a dict"},
		{"missing comma", npyFile(1, `{'descr': '<f4' 'fortran_order': False, 'shape': (1,)}`, le[float32](1)), "want ',' or '}' after descr"},
	}
	dir := t.TempDir()
	for i, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			p := filepath.Join(dir, strings.Repeat("b", i+1)+".npy")
			if err := os.WriteFile(p, c.file, 0o644); err != nil {
				t.Fatal(err)
			}
			a, err := ReadFile(p)
			if err == nil {
				t.Fatalf("read %+v", a)
			}
			if !strings.Contains(err.Error(), c.want) || !strings.Contains(err.Error(), p) {
				t.Fatalf("got %q, want it to name %s and contain %q", err, p, c.want)
			}
		})
	}
	if _, _, err := ReadFloat32(filepath.Join(dir, "missing.npy")); err == nil {
		t.Fatal("missing file read")
	}
	p := filepath.Join(dir, "i8.npy")
	WriteInt64(p, []int64{1}, 1)
	if _, _, err := ReadFloat32(p); err == nil || !strings.Contains(err.Error(), "not float32") {
		t.Fatalf("ReadFloat32 of int64: %v", err)
	}
}

// Only regular files are read: a FIFO (which would block), /dev/zero (endless) and a directory are errors
// naming the path, returned at once.
func TestReadNonRegularFiles(t *testing.T) {
	dir := t.TempDir()
	fifo := filepath.Join(dir, "pipe.npy")
	if err := syscall.Mkfifo(fifo, 0o644); err != nil {
		t.Skipf("mkfifo: %v", err)
	}
	paths := []string{fifo, dir}
	if _, err := os.Stat("/dev/zero"); err == nil {
		paths = append(paths, "/dev/zero")
	}
	for _, p := range paths {
		done := make(chan error, 1)
		go func() { _, err := ReadFile(p); done <- err }()
		select {
		case err := <-done:
			if err == nil || !strings.Contains(err.Error(), p) || !strings.Contains(err.Error(), "not a regular file") {
				t.Errorf("%s: got %v", p, err)
			}
		case <-time.After(10 * time.Second):
			t.Fatalf("%s: ReadFile still blocked after 10s", p)
		}
	}
}

// FuzzRead feeds arbitrary bytes to the .npy reader: every input must give an array or an error, never a
// panic, and an array holds exactly the values its shape says, no more than the input has bytes for.
func FuzzRead(f *testing.F) {
	f.Add(npyFile(1, `{'descr': '<f4', 'fortran_order': False, 'shape': (2, 3), }`, le[float32](1, 2, 3, 4, 5, 6)))
	f.Add(npyFile(2, `{'descr': '<f8', 'fortran_order': True, 'shape': (2, 1), }`, le(1.0, 2.0)))
	f.Add(npyFile(1, `{"shape": (1L,), "fortran_order": False, "descr": "<i8"}`, le[int64](1)))
	f.Add(npyFile(1, `{'descr': '<f4', 'fortran_order': False, 'shape': (4611686018427387904,), }`, nil))
	f.Add([]byte("\x93NUMPY\x01\x00\xff\xff{'descr'"))
	f.Fuzz(func(t *testing.T, b []byte) {
		a, err := Read("fuzz.npy", bytes.NewReader(b), int64(len(b)))
		if err != nil {
			return
		}
		n, err := elems(a.Shape, 1)
		if err != nil {
			t.Fatal(err)
		}
		got := len(a.F32) + len(a.F64) + len(a.I64)
		if got != n || 4*n > len(b) {
			t.Fatalf("%s %v: %d values from %d bytes", a.Descr, a.Shape, got, len(b))
		}
	})
}
