package nn

import (
	"bufio"
	"bytes"
	"encoding/binary"
	"encoding/json"
	"fmt"
	"io"
	"math"
	"mimlab/framework/files"
	"sort"
)

// Array is one named tensor of a safetensors file: float32 (F32) or int64 (I64) values and a shape.
type Array struct {
	Shape []int
	F32   []float32
	I64   []int64
}

// Size is the number of entries the shape holds.
func (a Array) Size() int {
	n := 1
	for _, d := range a.Shape {
		n *= d
	}
	return n
}

type stEntry struct {
	DType   string `json:"dtype"`
	Shape   []int  `json:"shape"`
	Offsets [2]int `json:"data_offsets"`
}

// SaveSafetensors writes arrays (sorted by name) and string metadata in the safetensors format, atomically:
// a crash never leaves a half-written file at path.
func SaveSafetensors(path string, arrays map[string]Array, meta map[string]string) error {
	names := make([]string, 0, len(arrays))
	for n := range arrays {
		names = append(names, n)
	}
	sort.Strings(names)
	header := map[string]any{}
	if len(meta) > 0 {
		header["__metadata__"] = meta
	}
	var data bytes.Buffer
	for _, n := range names {
		a := arrays[n]
		if a.Size() != len(a.F32)+len(a.I64) {
			return fmt.Errorf("safetensors %s: %q has shape %v but %d values", path, n, a.Shape, len(a.F32)+len(a.I64))
		}
		start := data.Len()
		dt := "F32"
		if a.I64 != nil {
			dt = "I64"
			binary.Write(&data, binary.LittleEndian, a.I64)
		} else {
			binary.Write(&data, binary.LittleEndian, a.F32)
		}
		shape := a.Shape
		if shape == nil {
			shape = []int{}
		}
		header[n] = stEntry{DType: dt, Shape: shape, Offsets: [2]int{start, data.Len()}}
	}
	hj, err := json.Marshal(header)
	if err != nil {
		return err
	}
	for len(hj)%8 != 0 {
		hj = append(hj, ' ')
	}
	return files.WriteAtomic(path, func(w io.Writer) error {
		var lenBuf [8]byte
		binary.LittleEndian.PutUint64(lenBuf[:], uint64(len(hj)))
		if _, err := w.Write(lenBuf[:]); err != nil {
			return err
		}
		if _, err := w.Write(hj); err != nil {
			return err
		}
		_, err := w.Write(data.Bytes())
		return err
	})
}

// MaxSafetensorsHeader caps the JSON header of a safetensors file (100 MiB, the limit of the reference
// implementation): a header length above it, or above the file size, is refused before anything is allocated.
const MaxSafetensorsHeader = 100 << 20

// stDTypeSizes are the dtypes LoadSafetensors reads and their sizes in bytes.
var stDTypeSizes = map[string]int{"F32": 4, "F64": 8, "I64": 8}

// LoadSafetensors reads a safetensors file (F32, F64 converted to float32, I64). The path must name a regular
// file (a directory, FIFO or device is an error, not a hang); the header and every tensor's shape, dtype and
// data_offsets are checked against the file size before any tensor is allocated.
func LoadSafetensors(path string) (map[string]Array, map[string]string, error) {
	f, size, err := files.OpenRegular(path)
	if err != nil {
		return nil, nil, err
	}
	defer f.Close()
	return readSafetensors(path, bufio.NewReaderSize(f, 1<<16), size)
}

// openRegular opens path for reading after checking (before opening, so a FIFO cannot block) that it is a
// parseSafetensors reads safetensors bytes held in memory; name is used in errors.
func parseSafetensors(name string, b []byte) (map[string]Array, map[string]string, error) {
	return readSafetensors(name, bytes.NewReader(b), int64(len(b)))
}

// stTensor is one validated header entry: data_offsets are relative to the data after the header.
type stTensor struct {
	name       string
	dtype      string
	shape      []int
	n          int // number of elements
	begin, end int
}

// readSafetensors reads a safetensors stream of size bytes. The header is validated in full (see
// stHeader) before tensors are read, in offset order, each into its own buffer.
func readSafetensors(name string, r io.Reader, size int64) (map[string]Array, map[string]string, error) {
	if size < 8 {
		return nil, nil, fmt.Errorf("%s: not a safetensors file (%d bytes, too short)", name, size)
	}
	var lenBuf [8]byte
	if _, err := io.ReadFull(r, lenBuf[:]); err != nil {
		return nil, nil, fmt.Errorf("%s: reading the header length: %w", name, err)
	}
	hl := binary.LittleEndian.Uint64(lenBuf[:])
	if hl > MaxSafetensorsHeader {
		return nil, nil, fmt.Errorf("%s: not a safetensors file (header length %d exceeds the limit of %d bytes)", name, hl, MaxSafetensorsHeader)
	}
	if hl > uint64(size-8) {
		return nil, nil, fmt.Errorf("%s: not a safetensors file (header length %d > %d bytes in the file after it)", name, hl, size-8)
	}
	hj := make([]byte, hl)
	if _, err := io.ReadFull(r, hj); err != nil {
		return nil, nil, fmt.Errorf("%s: reading the header: %w", name, err)
	}
	tensors, meta, err := stHeader(name, hj, size-8-int64(hl))
	if err != nil {
		return nil, nil, err
	}
	out := make(map[string]Array, len(tensors))
	pos := 0
	for _, t := range tensors {
		if _, err := io.CopyN(io.Discard, r, int64(t.begin-pos)); err != nil {
			return nil, nil, fmt.Errorf("%s: tensor %q: %w", name, t.name, err)
		}
		b := make([]byte, t.end-t.begin)
		if _, err := io.ReadFull(r, b); err != nil {
			return nil, nil, fmt.Errorf("%s: tensor %q: reading %d bytes: %w", name, t.name, len(b), err)
		}
		pos = t.end
		out[t.name] = stDecode(t, b)
	}
	return out, meta, nil
}

// stHeader parses and validates a safetensors JSON header for a data section of dataLen bytes: known dtypes,
// non-negative dimensions whose product (times the dtype size) does not overflow and equals the entry's
// data_offsets span, offsets inside the data, and no two tensors overlapping. The tensors come back sorted by
// offset.
func stHeader(name string, hj []byte, dataLen int64) ([]stTensor, map[string]string, error) {
	var header map[string]json.RawMessage
	if err := json.Unmarshal(hj, &header); err != nil {
		return nil, nil, fmt.Errorf("%s: bad safetensors header: %w", name, err)
	}
	names := make([]string, 0, len(header))
	for tn := range header {
		names = append(names, tn)
	}
	sort.Strings(names) // the first bad entry by name is reported, the same one every time
	var meta map[string]string
	tensors := make([]stTensor, 0, len(header))
	for _, tn := range names {
		msg := header[tn]
		if tn == "__metadata__" {
			if err := json.Unmarshal(msg, &meta); err != nil {
				return nil, nil, fmt.Errorf("%s: bad __metadata__ (want string values): %w", name, err)
			}
			continue
		}
		t, err := stEntryCheck(tn, msg, dataLen)
		if err != nil {
			return nil, nil, fmt.Errorf("%s: tensor %q: %w", name, tn, err)
		}
		tensors = append(tensors, t)
	}
	sort.Slice(tensors, func(i, j int) bool {
		a, b := tensors[i], tensors[j]
		if a.begin != b.begin {
			return a.begin < b.begin
		}
		if a.end != b.end {
			return a.end < b.end
		}
		return a.name < b.name
	})
	for i := 1; i < len(tensors); i++ {
		if p, t := tensors[i-1], tensors[i]; t.begin < p.end {
			return nil, nil, fmt.Errorf("%s: tensor %q: data_offsets [%d, %d] overlap those of %q [%d, %d]", name, t.name, t.begin, t.end, p.name, p.begin, p.end)
		}
	}
	return tensors, meta, nil
}

// stEntryCheck decodes and validates one header entry.
func stEntryCheck(tn string, msg json.RawMessage, dataLen int64) (stTensor, error) {
	var e struct {
		DType   string  `json:"dtype"`
		Shape   []int   `json:"shape"`
		Offsets []int64 `json:"data_offsets"`
	}
	if err := json.Unmarshal(msg, &e); err != nil {
		return stTensor{}, fmt.Errorf("bad entry: %w", err)
	}
	size, ok := stDTypeSizes[e.DType]
	if !ok {
		return stTensor{}, fmt.Errorf("dtype %q not supported (F32, F64, I64)", e.DType)
	}
	if e.Shape == nil {
		return stTensor{}, fmt.Errorf("no shape")
	}
	if len(e.Offsets) != 2 {
		return stTensor{}, fmt.Errorf("data_offsets %v: want [begin, end]", e.Offsets)
	}
	begin, end := e.Offsets[0], e.Offsets[1]
	if begin < 0 || begin > end || end > dataLen {
		return stTensor{}, fmt.Errorf("data_offsets [%d, %d] outside the %d data bytes or out of order", begin, end, dataLen)
	}
	n, err := shapeElems(e.Shape, size)
	if err != nil {
		return stTensor{}, err
	}
	if int64(n*size) != end-begin {
		return stTensor{}, fmt.Errorf("shape %v of %s needs %d bytes but data_offsets [%d, %d] hold %d", e.Shape, e.DType, n*size, begin, end, end-begin)
	}
	return stTensor{name: tn, dtype: e.DType, shape: e.Shape, n: n, begin: int(begin), end: int(end)}, nil
}

// shapeElems is the product of the dimensions, checked so that it times elemSize fits an int.
func shapeElems(shape []int, elemSize int) (int, error) {
	n := 1
	for _, d := range shape {
		if d < 0 {
			return 0, fmt.Errorf("shape %v: negative dimension", shape)
		}
		if d != 0 && n > math.MaxInt/elemSize/d {
			return 0, fmt.Errorf("shape %v: too many elements (the byte size overflows)", shape)
		}
		n *= d
	}
	return n, nil
}

// stDecode converts a validated tensor's little-endian bytes (len(b) == t.n * dtype size).
func stDecode(t stTensor, b []byte) Array {
	a := Array{Shape: t.shape}
	switch t.dtype {
	case "F32":
		a.F32 = make([]float32, t.n)
		for i := range a.F32 {
			a.F32[i] = math.Float32frombits(binary.LittleEndian.Uint32(b[4*i:]))
		}
	case "F64":
		a.F32 = make([]float32, t.n)
		for i := range a.F32 {
			a.F32[i] = float32(math.Float64frombits(binary.LittleEndian.Uint64(b[8*i:])))
		}
	case "I64":
		a.I64 = make([]int64, t.n)
		for i := range a.I64 {
			a.I64[i] = int64(binary.LittleEndian.Uint64(b[8*i:]))
		}
	}
	return a
}
