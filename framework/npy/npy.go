// Package npy writes and reads NumPy .npy files (format 1.0, little-endian float32 and int64), so that
// exported features open with numpy.load.
package npy

import (
	"bytes"
	"encoding/binary"
	"fmt"
	"os"
	"regexp"
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

func write(path string, hdr []byte, data any) error {
	var b bytes.Buffer
	b.Write(hdr)
	if err := binary.Write(&b, binary.LittleEndian, data); err != nil {
		return err
	}
	tmp := path + ".tmp"
	if err := os.WriteFile(tmp, b.Bytes(), 0o644); err != nil {
		return err
	}
	return os.Rename(tmp, path)
}

// WriteFloat32 writes a float32 array of the given shape.
func WriteFloat32(path string, data []float32, shape ...int) error {
	return write(path, header("<f4", shape), data)
}

// WriteInt64 writes an int64 array of the given shape.
func WriteInt64(path string, data []int64, shape ...int) error {
	return write(path, header("<i8", shape), data)
}

var shapeRE = regexp.MustCompile(`'shape': \(([^)]*)\)`)

// ReadFloat32 reads a float32 .npy file.
func ReadFloat32(path string) ([]float32, []int, error) {
	raw, err := os.ReadFile(path)
	if err != nil {
		return nil, nil, err
	}
	if len(raw) < 10 || string(raw[:6]) != "\x93NUMPY" {
		return nil, nil, fmt.Errorf("%s: not a .npy file", path)
	}
	hl := int(binary.LittleEndian.Uint16(raw[8:10]))
	h := string(raw[10 : 10+hl])
	if !strings.Contains(h, "'<f4'") {
		return nil, nil, fmt.Errorf("%s: not float32", path)
	}
	var shape []int
	n := 1
	for _, p := range strings.Split(shapeRE.FindStringSubmatch(h)[1], ",") {
		if p = strings.TrimSpace(p); p != "" {
			d, _ := strconv.Atoi(p)
			shape = append(shape, d)
			n *= d
		}
	}
	out := make([]float32, n)
	err = binary.Read(bytes.NewReader(raw[10+hl:]), binary.LittleEndian, out)
	return out, shape, err
}
