package data

import (
	"fmt"
	"image"
	_ "image/jpeg"
	_ "image/png"
	"io"
	"math/rand/v2"
	"mimlab/framework/files"
	"os"
	"path/filepath"
	"slices"
	"strings"
)

// loadImageFolder reads root/<class>/*.{png,jpg,jpeg} (the ImageNet layout). With root/train and root/test
// it uses them as the splits; otherwise it holds out test_fraction of each class, seeded by subset_seed.
// Each image is resized (shorter side to image_size, bilinear) and centre-cropped.
func loadImageFolder(c *Config) (*Dataset, error) {
	if st, err := os.Stat(c.Root); err != nil || !st.IsDir() {
		return nil, fmt.Errorf("data.root = %q: not a folder (imagefolder wants root/<class>/*.png or root/train/<class>/...)", c.Root)
	}
	ch := c.Channels
	if ch == 0 {
		ch = 3
	}
	d := &Dataset{Name: "imagefolder", Channels: ch, Size: c.ImageSize}
	trainDir, testDir := filepath.Join(c.Root, "train"), filepath.Join(c.Root, "test")
	if isDir(trainDir) && isDir(testDir) {
		classes, err := classDirs(trainDir)
		if err != nil {
			return nil, err
		}
		d.ClassNames = classes
		if d.Train, err = readClassImages(trainDir, classes, ch, c.ImageSize, nil); err != nil {
			return nil, err
		}
		if d.Test, err = readClassImages(testDir, classes, ch, c.ImageSize, nil); err != nil {
			return nil, err
		}
	} else {
		classes, err := classDirs(c.Root)
		if err != nil {
			return nil, err
		}
		d.ClassNames = classes
		all, err := readClassImages(c.Root, classes, ch, c.ImageSize, nil)
		if err != nil {
			return nil, err
		}
		r := rand.New(rand.NewPCG(c.SubsetSeed, 0x73706c6974))
		var trainIdx, testIdx []int
		for k := range classes {
			var ix []int
			for i, l := range all.Labels {
				if l == k {
					ix = append(ix, i)
				}
			}
			r.Shuffle(len(ix), func(a, b int) { ix[a], ix[b] = ix[b], ix[a] })
			nt := int(float64(len(ix))*c.TestFraction + 0.5)
			if nt < 1 && len(ix) > 1 {
				nt = 1
			}
			testIdx = append(testIdx, ix[:nt]...)
			trainIdx = append(trainIdx, ix[nt:]...)
		}
		slices.Sort(trainIdx)
		slices.Sort(testIdx)
		d.Train = all.subset(trainIdx, d.ImageLen())
		d.Test = all.subset(testIdx, d.ImageLen())
	}
	d.Classes = len(d.ClassNames)
	if d.Train.N == 0 || d.Test.N == 0 {
		return nil, fmt.Errorf("data.root = %q: %d train and %d test images; both splits need images", c.Root, d.Train.N, d.Test.N)
	}
	d.applyLimits(c)
	return d, nil
}

func isDir(p string) bool {
	st, err := os.Stat(p)
	return err == nil && st.IsDir()
}

// classDirs lists root's class folders: sub-folders not starting with ".", symlinks to folders included (a
// symlink whose target is missing is an error, so that no class is dropped silently).
func classDirs(root string) ([]string, error) {
	ents, err := os.ReadDir(root)
	if err != nil {
		return nil, fmt.Errorf("data.root: %w", err)
	}
	var out []string
	for _, e := range ents {
		if strings.HasPrefix(e.Name(), ".") {
			continue
		}
		isClass := e.IsDir()
		if e.Type()&os.ModeSymlink != 0 {
			st, err := os.Stat(filepath.Join(root, e.Name()))
			if err != nil {
				return nil, fmt.Errorf("data.root: symlink %s: %w", filepath.Join(root, e.Name()), err)
			}
			isClass = st.IsDir()
		}
		if isClass {
			out = append(out, e.Name())
		}
	}
	if len(out) < 2 {
		return nil, fmt.Errorf("data.root = %q: found %d class folders; imagefolder wants root/<class>/*.png with at least 2 classes", root, len(out))
	}
	return out, nil
}

func readClassImages(root string, classes []string, ch, size int, _ []int) (Split, error) {
	var s Split
	for k, cls := range classes {
		ents, err := os.ReadDir(filepath.Join(root, cls))
		if err != nil {
			return s, fmt.Errorf("data.root: class %q: %w", cls, err)
		}
		for _, e := range ents {
			ext := strings.ToLower(filepath.Ext(e.Name()))
			if e.IsDir() || (ext != ".png" && ext != ".jpg" && ext != ".jpeg") {
				continue
			}
			p := filepath.Join(root, cls, e.Name())
			img, err := decodeImage(p, ch, size)
			if err != nil {
				return s, err
			}
			s.Images = append(s.Images, img...)
			s.Labels = append(s.Labels, k)
			s.N++
		}
	}
	return s, nil
}

// MaxImagePixels is the largest image (width x height) imagefolder decodes: larger ones are refused from
// their header, before any pixel is allocated (a few hundred bytes of PNG can claim 100000x100000).
const MaxImagePixels = 8192 * 8192

// decodeImage reads one image file (a regular file: a FIFO or device in a class folder is an error, not a hang)
// and returns it resized and cropped to size x size with ch channels.
func decodeImage(path string, ch, size int) ([]float32, error) {
	f, _, err := files.OpenRegular(path)
	if err != nil {
		return nil, fmt.Errorf("data.root: %w", err)
	}
	defer f.Close()
	return decodeImageFrom(path, f, ch, size)
}

// decodeImageFrom decodes a PNG or JPEG after checking, from its header, that it is at most MaxImagePixels.
func decodeImageFrom(path string, r io.ReadSeeker, ch, size int) ([]float32, error) {
	cfg, _, err := image.DecodeConfig(r)
	if err != nil {
		return nil, fmt.Errorf("data.root: %s: cannot decode image (corrupt or not PNG/JPEG): %w", path, err)
	}
	if w, h := cfg.Width, cfg.Height; w <= 0 || h <= 0 {
		return nil, fmt.Errorf("data.root: %s: empty image (%dx%d)", path, w, h)
	} else if w > MaxImagePixels/h {
		return nil, fmt.Errorf("data.root: %s: image %dx%d exceeds the limit of 8192x8192 pixels (data.MaxImagePixels)", path, w, h)
	}
	if _, err := r.Seek(0, io.SeekStart); err != nil {
		return nil, fmt.Errorf("data.root: %s: %w", path, err)
	}
	im, _, err := image.Decode(r)
	if err != nil {
		return nil, fmt.Errorf("data.root: %s: cannot decode image (corrupt or not PNG/JPEG): %w", path, err)
	}
	b := im.Bounds()
	w, h := b.Dx(), b.Dy()
	if w <= 0 || h <= 0 {
		return nil, fmt.Errorf("data.root: %s: empty image", path)
	}
	rgb := make([]float32, 3*w*h)
	for y := 0; y < h; y++ {
		for x := 0; x < w; x++ {
			r, g, bb, _ := im.At(b.Min.X+x, b.Min.Y+y).RGBA()
			rgb[y*w+x] = float32(r) / 65535
			rgb[w*h+y*w+x] = float32(g) / 65535
			rgb[2*w*h+y*w+x] = float32(bb) / 65535
		}
	}
	// Shorter side to size, then centre crop.
	side := float64(min(w, h))
	top, left := (float64(h)-side)/2, (float64(w)-side)/2
	out := cropResize(rgb, 3, h, w, top, left, side, side, size, size)
	return convertChannels(out, 3, ch, size), nil
}
