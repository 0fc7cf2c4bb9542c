package nn

import (
	"bytes"
	"encoding/binary"
	"encoding/json"
	"fmt"
	"math"
	"os"
	"path/filepath"
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
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		return err
	}
	tmp := path + ".tmp"
	f, err := os.Create(tmp)
	if err != nil {
		return err
	}
	var lenBuf [8]byte
	binary.LittleEndian.PutUint64(lenBuf[:], uint64(len(hj)))
	_, err = f.Write(lenBuf[:])
	if err == nil {
		_, err = f.Write(hj)
	}
	if err == nil {
		_, err = f.Write(data.Bytes())
	}
	if err == nil {
		err = f.Sync()
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		os.Remove(tmp)
		return fmt.Errorf("writing %s: %w", path, err)
	}
	return os.Rename(tmp, path)
}

// LoadSafetensors reads a safetensors file (F32, F64 converted to float32, I64).
func LoadSafetensors(path string) (map[string]Array, map[string]string, error) {
	raw, err := os.ReadFile(path)
	if err != nil {
		return nil, nil, err
	}
	if len(raw) < 8 {
		return nil, nil, fmt.Errorf("%s: not a safetensors file (too short)", path)
	}
	hl := binary.LittleEndian.Uint64(raw[:8])
	if hl > uint64(len(raw)-8) {
		return nil, nil, fmt.Errorf("%s: not a safetensors file (header length %d > file)", path, hl)
	}
	var header map[string]json.RawMessage
	if err := json.Unmarshal(raw[8:8+hl], &header); err != nil {
		return nil, nil, fmt.Errorf("%s: bad safetensors header: %w", path, err)
	}
	body := raw[8+hl:]
	out := map[string]Array{}
	var meta map[string]string
	for name, msg := range header {
		if name == "__metadata__" {
			if err := json.Unmarshal(msg, &meta); err != nil {
				return nil, nil, fmt.Errorf("%s: bad metadata: %w", path, err)
			}
			continue
		}
		var e stEntry
		if err := json.Unmarshal(msg, &e); err != nil {
			return nil, nil, fmt.Errorf("%s: entry %q: %w", path, name, err)
		}
		if e.Offsets[0] < 0 || e.Offsets[1] > len(body) || e.Offsets[0] > e.Offsets[1] {
			return nil, nil, fmt.Errorf("%s: entry %q: offsets %v outside the data", path, name, e.Offsets)
		}
		b := body[e.Offsets[0]:e.Offsets[1]]
		a := Array{Shape: e.Shape}
		n := a.Size()
		switch e.DType {
		case "F32":
			if len(b) != 4*n {
				return nil, nil, fmt.Errorf("%s: entry %q: %d bytes for %d float32", path, name, len(b), n)
			}
			a.F32 = make([]float32, n)
			for i := range a.F32 {
				a.F32[i] = math.Float32frombits(binary.LittleEndian.Uint32(b[4*i:]))
			}
		case "F64":
			if len(b) != 8*n {
				return nil, nil, fmt.Errorf("%s: entry %q: %d bytes for %d float64", path, name, len(b), n)
			}
			a.F32 = make([]float32, n)
			for i := range a.F32 {
				a.F32[i] = float32(math.Float64frombits(binary.LittleEndian.Uint64(b[8*i:])))
			}
		case "I64":
			if len(b) != 8*n {
				return nil, nil, fmt.Errorf("%s: entry %q: %d bytes for %d int64", path, name, len(b), n)
			}
			a.I64 = make([]int64, n)
			for i := range a.I64 {
				a.I64[i] = int64(binary.LittleEndian.Uint64(b[8*i:]))
			}
		default:
			return nil, nil, fmt.Errorf("%s: entry %q: dtype %s not supported (F32, F64, I64)", path, name, e.DType)
		}
		out[name] = a
	}
	return out, meta, nil
}
