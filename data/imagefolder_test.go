package data

import (
	"bytes"
	"encoding/binary"
	"hash/crc32"
	"image"
	"image/color"
	"image/jpeg"
	"image/png"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"syscall"
	"testing"
	"time"
)

// pngBytes encodes a w x h gradient as PNG.
func pngBytes(t testing.TB, w, h int) []byte {
	im := image.NewRGBA(image.Rect(0, 0, w, h))
	for y := 0; y < h; y++ {
		for x := 0; x < w; x++ {
			im.Set(x, y, color.RGBA{uint8(x), uint8(y), uint8(x + y), 255})
		}
	}
	var b bytes.Buffer
	if err := png.Encode(&b, im); err != nil {
		t.Fatal(err)
	}
	return b.Bytes()
}

// pngClaiming is a small valid PNG whose IHDR is rewritten (CRC fixed) to claim w x h.
func pngClaiming(t testing.TB, w, h uint32) []byte {
	b := pngBytes(t, 4, 4)
	// 8-byte signature, then IHDR: length (4), "IHDR" (4), width (4), height (4), 5 more bytes, CRC (4).
	binary.BigEndian.PutUint32(b[16:], w)
	binary.BigEndian.PutUint32(b[20:], h)
	binary.BigEndian.PutUint32(b[29:], crc32.ChecksumIEEE(b[12:29]))
	return b
}

// jpegClaiming is a small valid JPEG whose SOF0 frame header is rewritten to claim w x h.
func jpegClaiming(t testing.TB, w, h uint16) []byte {
	var buf bytes.Buffer
	if err := jpeg.Encode(&buf, image.NewGray(image.Rect(0, 0, 8, 8)), nil); err != nil {
		t.Fatal(err)
	}
	b := buf.Bytes()
	i := bytes.Index(b, []byte{0xff, 0xc0})
	if i < 0 {
		t.Fatal("no SOF0 marker")
	}
	// marker (2), length (2), precision (1), height (2), width (2)
	binary.BigEndian.PutUint16(b[i+5:], h)
	binary.BigEndian.PutUint16(b[i+7:], w)
	return b
}

// Image headers are checked before any pixel is decoded: too large, empty or corrupt images are errors naming
// the file; a long thin image under the pixel limit decodes.
func TestDecodeImageChecks(t *testing.T) {
	huge := pngClaiming(t, 100000, 100000)
	cases := []struct {
		name string
		file []byte
		want string // "" when the image must decode
	}{
		{"PNG claiming 100000x100000", huge, "image 100000x100000 exceeds the limit of 8192x8192 pixels"},
		{"PNG claiming 8192x8193", pngClaiming(t, 8192, 8193), "image 8192x8193 exceeds the limit"},
		{"PNG claiming 1000000x1000 (long and thin)", pngClaiming(t, 1000000, 1000), "image 1000000x1000 exceeds the limit"},
		{"JPEG claiming 65535x65535", jpegClaiming(t, 65535, 65535), "image 65535x65535 exceeds the limit"},
		{"PNG of width 0", pngClaiming(t, 0, 4), "cannot decode image"},
		{"truncated PNG", huge[:30], "cannot decode image"},
		{"not an image", []byte("GIF89a but not really"), "cannot decode image"},
		{"empty file", nil, "cannot decode image"},
		{"16384x4 PNG (65536 pixels)", pngBytes(t, 16384, 4), ""},
	}
	dir := t.TempDir()
	for i, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			p := filepath.Join(dir, strings.Repeat("i", i+1)+".png")
			if err := os.WriteFile(p, c.file, 0o644); err != nil {
				t.Fatal(err)
			}
			var before, after runtime.MemStats
			runtime.ReadMemStats(&before)
			img, err := decodeImage(p, 3, 12)
			runtime.ReadMemStats(&after)
			if c.want == "" {
				if err != nil || len(img) != 3*12*12 {
					t.Fatalf("got %d values, %v", len(img), err)
				}
				return
			}
			if err == nil || !strings.Contains(err.Error(), c.want) || !strings.Contains(err.Error(), p) {
				t.Fatalf("got %v, want an error naming %s and containing %q", err, p, c.want)
			}
			if alloc := after.TotalAlloc - before.TotalAlloc; alloc > 4<<20 {
				t.Errorf("rejecting the image allocated %d bytes", alloc)
			}
		})
	}
	if len(huge) > 1024 {
		t.Fatalf("the 100000x100000 PNG is %d bytes; meant to be tiny", len(huge))
	}
}

// imageRoot makes a two-class image folder: root/cat and root/dog with 3 PNGs each.
func imageRoot(t *testing.T) string {
	root := t.TempDir()
	writeImages(t, root, []string{"cat", "dog"}, 3)
	return root
}

// A FIFO, a directory or a device named like an image in a class folder is an error naming it, returned at
// once (a FIFO used to block Load forever).
func TestImageFolderNonRegularImages(t *testing.T) {
	cases := []struct {
		name string
		make func(p string) error
	}{
		{"FIFO", func(p string) error { return syscall.Mkfifo(p, 0o644) }},
		{"directory", func(p string) error { return os.Mkdir(p, 0o755) }},
		{"symlink to /dev/zero", func(p string) error { return os.Symlink("/dev/zero", p) }},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			root := imageRoot(t)
			p := filepath.Join(root, "cat", "x.png")
			if err := c.make(p); err != nil {
				t.Skip(err)
			}
			if c.name == "directory" {
				// A folder named x.png is not listed as an image (no error), as before.
				cfg := defaults("imagefolder")
				cfg.Root, cfg.ImageSize, cfg.PatchSize = root, 12, 4
				load(t, cfg)
				if _, err := decodeImage(p, 3, 12); err == nil || !strings.Contains(err.Error(), "not a regular file") {
					t.Fatalf("decodeImage(folder): %v", err)
				}
				return
			}
			done := make(chan error, 1)
			go func() {
				cfg := defaults("imagefolder")
				cfg.Root, cfg.ImageSize, cfg.PatchSize = root, 12, 4
				_, err := Load(cfg)
				done <- err
			}()
			select {
			case err := <-done:
				if err == nil || !strings.Contains(err.Error(), p) || !strings.Contains(err.Error(), "not a regular file") {
					t.Fatalf("got %v", err)
				}
			case <-time.After(10 * time.Second):
				t.Fatal("Load still blocked after 10s")
			}
		})
	}
}

// A class folder reached through a symlink is a class (it used to be skipped silently); a broken symlink in
// the root is an error naming it.
func TestImageFolderSymlinkedClasses(t *testing.T) {
	root := imageRoot(t)
	elsewhere := t.TempDir()
	writeImages(t, elsewhere, []string{"owl"}, 3)
	if err := os.Symlink(filepath.Join(elsewhere, "owl"), filepath.Join(root, "owl")); err != nil {
		t.Skip(err)
	}
	os.WriteFile(filepath.Join(root, "README.txt"), []byte("a file in the root is not a class"), 0o644)
	os.Symlink(filepath.Join(root, "README.txt"), filepath.Join(root, "readme-link"))
	cfg := defaults("imagefolder")
	cfg.Root, cfg.ImageSize, cfg.PatchSize = root, 12, 4
	d := load(t, cfg)
	if d.Classes != 3 || d.ClassNames[2] != "owl" || d.Train.N+d.Test.N != 9 {
		t.Fatalf("classes %v, %d images", d.ClassNames, d.Train.N+d.Test.N)
	}

	ghost := filepath.Join(root, "ghost")
	os.Symlink(filepath.Join(elsewhere, "no-such-class"), ghost)
	_, err := Load(cfg)
	if err == nil || !strings.Contains(err.Error(), ghost) || !strings.Contains(err.Error(), "symlink") {
		t.Fatalf("broken class symlink: got %v", err)
	}
}

// FuzzDecodeImage feeds arbitrary bytes to the single-image decoder: every input must give a size x size
// image with values in [0, 1] or an error, never a panic or a huge allocation.
func FuzzDecodeImage(f *testing.F) {
	f.Add(pngBytes(f, 5, 3))
	f.Add(pngClaiming(f, 100000, 100000))
	f.Add(jpegClaiming(f, 9, 7))
	f.Add(jpegClaiming(f, 65535, 65535))
	f.Add([]byte("\x89PNG\r\n\x1a\n"))
	f.Fuzz(func(t *testing.T, b []byte) {
		if cfg, _, err := image.DecodeConfig(bytes.NewReader(b)); err == nil && cfg.Width > 0 && cfg.Height > 0 &&
			cfg.Width <= MaxImagePixels/cfg.Height && cfg.Width*cfg.Height > 1<<20 {
			t.Skip("a large image under the limit: slow to decode, not what this target is for")
		}
		img, err := decodeImageFrom("fuzz.png", bytes.NewReader(b), 3, 8)
		if err != nil {
			return
		}
		if len(img) != 3*8*8 {
			t.Fatalf("%d values", len(img))
		}
		for _, v := range img {
			if !(v >= 0 && v <= 1) {
				t.Fatalf("value %v outside [0, 1]", v)
			}
		}
	})
}
