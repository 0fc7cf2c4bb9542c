package nn

import (
	"bytes"
	"encoding/binary"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"
)

// stBytes builds a safetensors file from a JSON header and the data bytes after it.
func stBytes(header string, data []byte) []byte {
	var b bytes.Buffer
	binary.Write(&b, binary.LittleEndian, uint64(len(header)))
	b.WriteString(header)
	b.Write(data)
	return b.Bytes()
}

// stValid is a well-formed file: two F32 tensors, an I64 one, an empty one, metadata and a gap before "z".
func stValid() []byte {
	data := make([]byte, 8+16+8+4)
	binary.LittleEndian.PutUint32(data[0:], 0x3f800000) // 1.0
	binary.LittleEndian.PutUint64(data[8:], 7)
	binary.LittleEndian.PutUint32(data[32:], 0x40000000) // 2.0 after a 8-byte gap
	return stBytes(`{"__metadata__":{"k":"v"},"a":{"dtype":"F32","shape":[2],"data_offsets":[0,8]},`+
		`"i":{"dtype":"I64","shape":[2,1],"data_offsets":[8,24]},"e":{"dtype":"F64","shape":[0,3],"data_offsets":[24,24]},`+
		`"z":{"dtype":"F32","shape":[],"data_offsets":[32,36]}}`, data)
}

func TestSafetensorsValidWithGapAndEmptyTensor(t *testing.T) {
	out, meta, err := parseSafetensors("v.safetensors", stValid())
	if err != nil {
		t.Fatal(err)
	}
	if meta["k"] != "v" || len(out) != 4 || out["a"].F32[0] != 1 || out["i"].I64[0] != 7 || out["z"].F32[0] != 2 || out["e"].Size() != 0 {
		t.Fatalf("got %+v %v", out, meta)
	}
}

// Malformed headers are errors naming the file and the tensor, never a panic or a huge allocation.
func TestSafetensorsRejectsBadHeaders(t *testing.T) {
	f32x2 := make([]byte, 8)
	cases := []struct {
		name string
		file []byte
		want []string
	}{
		{"shape 2^62 with empty offsets (was a makeslice panic)", stBytes(`{"a":{"dtype":"F32","shape":[4611686018427387904],"data_offsets":[0,0]}}`, nil), []string{`tensor "a"`, "too many elements"}},
		{"shape product wraps to 0", stBytes(`{"a":{"dtype":"I64","shape":[4611686018427387904,4],"data_offsets":[0,0]}}`, nil), []string{`tensor "a"`, "too many elements"}},
		{"shape product wraps to 1", stBytes(`{"a":{"dtype":"F32","shape":[4294967297,4294967295],"data_offsets":[0,4]}}`, make([]byte, 4)), []string{`tensor "a"`, "too many elements"}},
		{"negative dimensions", stBytes(`{"b":{"dtype":"F32","shape":[-1,-1],"data_offsets":[0,4]}}`, make([]byte, 4)), []string{`tensor "b"`, "negative dimension"}},
		{"unknown dtype", stBytes(`{"c":{"dtype":"F16","shape":[2],"data_offsets":[0,4]}}`, make([]byte, 4)), []string{`tensor "c"`, `dtype "F16" not supported`}},
		{"missing dtype", stBytes(`{"c":{"shape":[2],"data_offsets":[0,8]}}`, f32x2), []string{`tensor "c"`, `dtype "" not supported`}},
		{"offsets past the data", stBytes(`{"d":{"dtype":"F32","shape":[250],"data_offsets":[0,1000]}}`, f32x2), []string{`tensor "d"`, "outside the 8 data bytes"}},
		{"offsets reversed", stBytes(`{"d":{"dtype":"F32","shape":[2],"data_offsets":[8,0]}}`, f32x2), []string{`tensor "d"`, "out of order"}},
		{"negative offset", stBytes(`{"d":{"dtype":"F32","shape":[2],"data_offsets":[-8,0]}}`, f32x2), []string{`tensor "d"`, "data_offsets [-8, 0]"}},
		{"offsets not a pair", stBytes(`{"d":{"dtype":"F32","shape":[2],"data_offsets":[0,8,16]}}`, f32x2), []string{`tensor "d"`, "want [begin, end]"}},
		{"offsets missing", stBytes(`{"d":{"dtype":"F32","shape":[2]}}`, f32x2), []string{`tensor "d"`, "want [begin, end]"}},
		{"offset not an integer", stBytes(`{"d":{"dtype":"F32","shape":[2],"data_offsets":[0,1e30]}}`, f32x2), []string{`tensor "d"`, "bad entry"}},
		{"shape missing", stBytes(`{"d":{"dtype":"F32","data_offsets":[0,8]}}`, f32x2), []string{`tensor "d"`, "no shape"}},
		{"span does not match the shape", stBytes(`{"e":{"dtype":"F32","shape":[3],"data_offsets":[0,8]}}`, f32x2), []string{`tensor "e"`, "needs 12 bytes"}},
		{"overlapping tensors", stBytes(`{"f":{"dtype":"F32","shape":[2],"data_offsets":[0,8]},"g":{"dtype":"F32","shape":[2],"data_offsets":[4,12]}}`, make([]byte, 12)), []string{`tensor "g"`, `overlap those of "f"`}},
		{"same range twice", stBytes(`{"f":{"dtype":"F32","shape":[2],"data_offsets":[0,8]},"g":{"dtype":"F32","shape":[2],"data_offsets":[0,8]}}`, f32x2), []string{`tensor "g"`, `overlap those of "f"`}},
		{"metadata not strings", stBytes(`{"__metadata__":{"k":1}}`, nil), []string{"bad __metadata__"}},
		{"header not JSON", stBytes(`{"a":`, nil), []string{"bad safetensors header"}},
		{"header length past the file", append(binary.LittleEndian.AppendUint64(nil, 100), "{}"...), []string{"header length 100 > 2 bytes"}},
		{"header length 2^64-1", append(binary.LittleEndian.AppendUint64(nil, ^uint64(0)), "{}"...), []string{"exceeds the limit of 104857600 bytes"}},
		{"too short", []byte{1, 2, 3}, []string{"too short"}},
	}
	dir := t.TempDir()
	for i, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			path := filepath.Join(dir, strings.Repeat("x", i+1)+".safetensors")
			if err := os.WriteFile(path, c.file, 0o644); err != nil {
				t.Fatal(err)
			}
			out, _, err := LoadSafetensors(path)
			if err == nil {
				t.Fatalf("loaded %+v", out)
			}
			for _, w := range append(c.want, path) {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("error %q does not contain %q", err, w)
				}
			}
		})
	}
}

// The header cap applies before the header is read: a stream that claims a 200 MiB file and a 150 MiB header
// is refused after its first 8 bytes.
func TestSafetensorsHeaderCap(t *testing.T) {
	r := bytes.NewReader(binary.LittleEndian.AppendUint64(nil, 150<<20))
	_, _, err := readSafetensors("big.safetensors", r, 200<<20)
	if err == nil || !strings.Contains(err.Error(), "big.safetensors") || !strings.Contains(err.Error(), "exceeds the limit") {
		t.Fatalf("got %v", err)
	}
}

// A truncated stream (the file shrank after its size was taken) is an error naming the tensor.
func TestSafetensorsTruncatedStream(t *testing.T) {
	b := stValid()
	_, _, err := readSafetensors("t.safetensors", bytes.NewReader(b[:len(b)-2]), int64(len(b)))
	if err == nil || !strings.Contains(err.Error(), `tensor "z"`) {
		t.Fatalf("got %v", err)
	}
}

// Only regular files are read: a FIFO (which would block), /dev/zero (endless) and a directory are errors
// naming the path, returned at once.
func TestSafetensorsNonRegularFiles(t *testing.T) {
	dir := t.TempDir()
	fifo := filepath.Join(dir, "pipe.safetensors")
	if err := syscall.Mkfifo(fifo, 0o644); err != nil {
		t.Skipf("mkfifo: %v", err)
	}
	paths := []string{fifo, dir}
	if _, err := os.Stat("/dev/zero"); err == nil {
		paths = append(paths, "/dev/zero")
	}
	for _, p := range paths {
		done := make(chan error, 1)
		go func() { _, _, err := LoadSafetensors(p); done <- err }()
		select {
		case err := <-done:
			if err == nil || !strings.Contains(err.Error(), p) || !strings.Contains(err.Error(), "not a regular file") {
				t.Errorf("%s: got %v", p, err)
			}
		case <-time.After(10 * time.Second):
			t.Fatalf("%s: LoadSafetensors still blocked after 10s", p)
		}
	}
}

// FuzzSafetensors feeds arbitrary bytes to the safetensors parser: every input must give arrays or an error,
// never a panic, and what loads holds no more values than the input has bytes for.
func FuzzSafetensors(f *testing.F) {
	f.Add(stValid())
	f.Add(stBytes(`{"a":{"dtype":"F32","shape":[4611686018427387904],"data_offsets":[0,0]}}`, nil))
	f.Add(stBytes(`{"f":{"dtype":"F64","shape":[1],"data_offsets":[0,8]},"g":{"dtype":"I64","shape":[1],"data_offsets":[4,12]}}`, make([]byte, 12)))
	f.Add(stBytes(`{"__metadata__":{"k":"v"}}`, nil))
	f.Add([]byte{0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, '{', '}'})
	f.Fuzz(func(t *testing.T, b []byte) {
		out, _, err := parseSafetensors("fuzz.safetensors", b)
		if err != nil {
			return
		}
		total := 0
		for name, a := range out {
			n := a.Size()
			if n < 0 || n != len(a.F32)+len(a.I64) {
				t.Fatalf("%q: shape %v but %d values", name, a.Shape, len(a.F32)+len(a.I64))
			}
			total += n
		}
		if 4*total > len(b) {
			t.Fatalf("%d values from %d bytes", total, len(b))
		}
	})
}
