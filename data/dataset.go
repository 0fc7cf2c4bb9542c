package data

import (
	"fmt"
	"math/rand/v2"
	"slices"
	"strings"

	"mimlab/framework/registry"
)

// Split is one labelled split: N images of C x S x S float32 in [0,1] (NCHW), labels in [0, Classes).
type Split struct {
	Images []float32
	Labels []int
	N      int
}

// Dataset is a loaded dataset at the spec's size.
type Dataset struct {
	Name       string
	Channels   int
	Size       int
	Classes    int
	ClassNames []string
	Train      Split
	Test       Split
	// Mean and Std are per-channel statistics of the train split (used when normalize = true).
	Mean, Std []float32
}

// ImageLen is C*S*S.
func (d *Dataset) ImageLen() int { return d.Channels * d.Size * d.Size }

// Config is a dataset's resolved configuration as the loaders read it: the keys every dataset has plus each
// dataset's own (zero where they do not apply). A spec section decodes into the chosen dataset's own config
// (keys.go), whose Data() builds this. Its JSON form is the dataset's cache key and part of the reference
// rows' keys, so its fields and their order stay as they are.
type Config struct {
	Name       string    `toml:"name"`
	ImageSize  int       `toml:"image_size"`
	PatchSize  int       `toml:"patch_size"`
	Channels   int       `toml:"channels"` // 0: the dataset's own
	BatchSize  int       `toml:"batch_size"`
	TrainLimit int       `toml:"train_limit"` // class-balanced subset; 0 = all
	TestLimit  int       `toml:"test_limit"`
	Augment    []string  `toml:"augment"`    // random_resized_crop, hflip
	CropScale  []float64 `toml:"crop_scale"` // random_resized_crop's area range
	Normalize  bool      `toml:"normalize"`  // standardise with the train split's per-channel mean/std
	Root       string    `toml:"root"`       // imagefolder root; for mnist/fashion-mnist, a folder of idx files
	// imagefolder without train/ and test/ subfolders: fraction of each class held out, seeded.
	TestFraction float64 `toml:"test_fraction"`
	// SubsetSeed picks the class-balanced subsets and imagefolder's split. It is not the trial's seed, so
	// every trial of a comparison sees the same images.
	SubsetSeed uint64 `toml:"subset_seed"`
	// synthetic
	NumTrain int `toml:"num_train"`
	NumTest  int `toml:"num_test"`
	Classes  int `toml:"classes"`
}

// Limits on sizes a spec may ask for (the memory estimate of `sweep plan` bounds what fits the machine).
const (
	MaxImageSize = 8192
	MaxBatch     = 65536
	MaxImages    = 10_000_000
)

// Augmentations the loader knows.
var Augmentations = []string{"random_resized_crop", "hflip"}

func defaults(name string) *Config {
	c := &Config{Name: name, PatchSize: 4, BatchSize: 64, CropScale: []float64{0.6, 1}, TestFraction: 0.2}
	switch name {
	case "mnist", "fashion-mnist":
		c.ImageSize = 28
	case "imagefolder":
		c.ImageSize = 32
	case "synthetic":
		c.ImageSize, c.NumTrain, c.NumTest, c.Classes = 28, 2000, 500, 4
	}
	return c
}

// Validate checks the section; messages name the key and the allowed values.
func (c *Config) Validate() error {
	switch {
	case c.ImageSize <= 0:
		return fmt.Errorf("data.image_size = %d: must be > 0", c.ImageSize)
	case c.PatchSize <= 0:
		return fmt.Errorf("data.patch_size = %d: must be > 0", c.PatchSize)
	case c.ImageSize%c.PatchSize != 0:
		return fmt.Errorf("data.image_size = %d: patch_size %d must divide it (for example image_size %d or patch_size %d)",
			c.ImageSize, c.PatchSize, (c.ImageSize/c.PatchSize+1)*c.PatchSize, largestDivisor(c.ImageSize, c.PatchSize))
	case c.ImageSize > MaxImageSize:
		return fmt.Errorf("data.image_size = %d: at most %d", c.ImageSize, MaxImageSize)
	case c.BatchSize <= 0 || c.BatchSize > MaxBatch:
		return fmt.Errorf("data.batch_size = %d: must be in [1, %d]", c.BatchSize, MaxBatch)
	case c.TrainLimit > MaxImages || c.TestLimit > MaxImages:
		return fmt.Errorf("data.train_limit/test_limit = %d/%d: at most %d", c.TrainLimit, c.TestLimit, MaxImages)
	case c.NumTrain < 0 || c.NumTest < 0 || c.NumTrain > MaxImages || c.NumTest > MaxImages:
		return fmt.Errorf("data.num_train/num_test = %d/%d: must be in [0, %d]", c.NumTrain, c.NumTest, MaxImages)
	case c.Channels < 0 || c.Channels == 2 || c.Channels > 3:
		return fmt.Errorf("data.channels = %d: allowed values are 0 (the dataset's), 1, 3", c.Channels)
	case c.TrainLimit < 0 || c.TestLimit < 0:
		return fmt.Errorf("data.train_limit/test_limit must be >= 0 (0 = all)")
	case len(c.CropScale) != 2 || c.CropScale[0] <= 0 || c.CropScale[0] > c.CropScale[1] || c.CropScale[1] > 1:
		return fmt.Errorf("data.crop_scale = %v: must be [min, max] with 0 < min <= max <= 1", c.CropScale)
	case c.TestFraction <= 0 || c.TestFraction >= 1:
		return fmt.Errorf("data.test_fraction = %v: must be in (0, 1)", c.TestFraction)
	}
	for _, a := range c.Augment {
		if !slices.Contains(Augmentations, a) {
			return fmt.Errorf("data.augment: unknown augmentation %q; allowed: %s", a, strings.Join(Augmentations, ", "))
		}
	}
	if c.Name == "synthetic" {
		if c.Classes < 2 || c.Classes > len(shapeKinds) {
			return fmt.Errorf("data.classes = %d: synthetic has 2..%d classes", c.Classes, len(shapeKinds))
		}
		if c.NumTrain < c.Classes || c.NumTest < c.Classes {
			return fmt.Errorf("data.num_train/num_test must be >= classes (%d)", c.Classes)
		}
	}
	if c.Name == "imagefolder" && c.Root == "" {
		return fmt.Errorf("data.root: imagefolder needs the folder of class subfolders (root/<class>/*.png)")
	}
	return nil
}

// TrainSizeBound is an upper bound on the training split's size when the config alone tells it (synthetic:
// num_train; mnist and fashion-mnist as shipped: 60,000), lowered by train_limit; ok is false when only
// reading the data tells (imagefolder, idx files under data.root).
func (c *Config) TrainSizeBound() (n int, ok bool) {
	switch {
	case c.Name == "synthetic":
		n = c.NumTrain
	case (c.Name == "mnist" || c.Name == "fashion-mnist") && c.Root == "":
		n = 60000
	default:
		return 0, false
	}
	if c.TrainLimit > 0 && c.TrainLimit < n {
		n = c.TrainLimit
	}
	return n, true
}

func largestDivisor(n, upTo int) int {
	for p := upTo; p > 1; p-- {
		if n%p == 0 {
			return p
		}
	}
	return 1
}

// Registry is the kind "data".
var Registry = registry.NewKind[*Dataset]("data", "mimlab/data")

type loadFn func(c *Config) (*Dataset, error)

// loaders are the datasets by name; each registers itself (with its spec config) from its own file.
var loaders = map[string]loadFn{}

// register adds a dataset: its loader, and its spec config under the registry kind "data".
func register(name, doc string, fn loadFn, newConfig func() Source) {
	loaders[name] = fn
	Registry.Register(registry.Entry[*Dataset]{
		Name: name, Doc: doc, Default: name == "mnist", // the embedded default: needs nothing on a fresh machine
		NewConfig: func() registry.Config { return newConfig() },
		Build:     func(cfg registry.Config) (*Dataset, error) { return Load(cfg.(Source).Data()) },
	})
}

// Load validates c and loads the dataset it names.
func Load(c *Config) (*Dataset, error) {
	fn, ok := loaders[c.Name]
	if !ok {
		_, err := Registry.Lookup(c.Name)
		return nil, err
	}
	if err := c.Validate(); err != nil {
		return nil, err
	}
	return fn(c)
}

// balancedSubset picks limit indices from labels, round-robin over classes in a seeded order, so every
// class gets limit/classes (the first limit%classes classes one more). limit <= 0 keeps all, in order.
func balancedSubset(labels []int, classes, limit int, seed uint64) []int {
	if limit <= 0 || limit >= len(labels) {
		out := make([]int, len(labels))
		for i := range out {
			out[i] = i
		}
		return out
	}
	r := rand.New(rand.NewPCG(seed, 0x73756273))
	by := make([][]int, classes)
	for i, l := range labels {
		by[l] = append(by[l], i)
	}
	for _, ix := range by {
		r.Shuffle(len(ix), func(a, b int) { ix[a], ix[b] = ix[b], ix[a] })
	}
	out := make([]int, 0, limit)
	for round := 0; len(out) < limit; round++ {
		progressed := false
		for c := 0; c < classes && len(out) < limit; c++ {
			if round < len(by[c]) {
				out = append(out, by[c][round])
				progressed = true
			}
		}
		if !progressed {
			break
		}
	}
	slices.Sort(out)
	return out
}

func (s Split) subset(idx []int, imgLen int) Split {
	out := Split{Images: make([]float32, 0, len(idx)*imgLen), Labels: make([]int, 0, len(idx)), N: len(idx)}
	for _, i := range idx {
		out.Images = append(out.Images, s.Images[i*imgLen:(i+1)*imgLen]...)
		out.Labels = append(out.Labels, s.Labels[i])
	}
	return out
}

// applyLimits takes the class-balanced subsets and computes the train statistics.
func (d *Dataset) applyLimits(c *Config) {
	d.limit(c)
	d.Mean, d.Std = channelStats(d.Train, d.Channels, d.Size)
}

// limit takes the class-balanced subsets (train_limit, test_limit) of the splits as loaded.
func (d *Dataset) limit(c *Config) {
	seed := c.SubsetSeed
	n := d.ImageLen()
	if c.TrainLimit > 0 && c.TrainLimit < d.Train.N {
		d.Train = d.Train.subset(balancedSubset(d.Train.Labels, d.Classes, c.TrainLimit, seed), n)
	}
	if c.TestLimit > 0 && c.TestLimit < d.Test.N {
		d.Test = d.Test.subset(balancedSubset(d.Test.Labels, d.Classes, c.TestLimit, seed+1), n)
	}
}

func channelStats(s Split, c, size int) (mean, std []float32) {
	mean, std = make([]float32, c), make([]float32, c)
	hw := size * size
	for ch := 0; ch < c; ch++ {
		var sum, sq float64
		for i := 0; i < s.N; i++ {
			for _, v := range s.Images[(i*c+ch)*hw : (i*c+ch+1)*hw] {
				sum += float64(v)
				sq += float64(v) * float64(v)
			}
		}
		n := float64(s.N * hw)
		m := sum / n
		v := sq/n - m*m
		if v < 1e-12 {
			v = 1e-12
		}
		mean[ch], std[ch] = float32(m), float32(sqrtf(v))
	}
	return mean, std
}
