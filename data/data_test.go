package data

import (
	"image"
	"image/color"
	"image/jpeg"
	"image/png"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
)

func counts(labels []int, k int) []int {
	c := make([]int, k)
	for _, l := range labels {
		c[l]++
	}
	return c
}

func load(t *testing.T, c *Config) *Dataset {
	t.Helper()
	d, err := Load(c)
	if err != nil {
		t.Fatal(err)
	}
	return d
}

func TestMNISTCounts(t *testing.T) {
	d := load(t, defaults("mnist"))
	if d.Train.N != 60000 || d.Test.N != 10000 || d.Size != 28 || d.Channels != 1 {
		t.Fatalf("mnist: %d/%d images of %dx%dx%d", d.Train.N, d.Test.N, d.Channels, d.Size, d.Size)
	}
	wantTrain := []int{5923, 6742, 5958, 6131, 5842, 5421, 5918, 6265, 5851, 5949}
	wantTest := []int{980, 1135, 1032, 1010, 982, 892, 958, 1028, 974, 1009}
	if got := counts(d.Train.Labels, 10); !slices.Equal(got, wantTrain) {
		t.Errorf("train per class %v, want %v", got, wantTrain)
	}
	if got := counts(d.Test.Labels, 10); !slices.Equal(got, wantTest) {
		t.Errorf("test per class %v, want %v", got, wantTest)
	}
	if mx := slices.Max(d.Train.Images); mx != 1 || slices.Min(d.Train.Images) != 0 {
		t.Errorf("pixel range [%v, %v], want [0, 1]", slices.Min(d.Train.Images), mx)
	}
}

func TestFashionMNISTCounts(t *testing.T) {
	if _, err := os.Stat(FashionDir); err != nil && os.Getenv("CI") == "" {
		t.Skip("dataset-fashion-mnist not installed (CI installs it)")
	}
	d := load(t, defaults("fashion-mnist"))
	for i, c := range counts(d.Train.Labels, 10) {
		if c != 6000 {
			t.Errorf("train class %d: %d, want 6000", i, c)
		}
	}
	for i, c := range counts(d.Test.Labels, 10) {
		if c != 1000 {
			t.Errorf("test class %d: %d, want 1000", i, c)
		}
	}
}

func TestBalancedLimits(t *testing.T) {
	c := defaults("mnist")
	c.TrainLimit, c.TestLimit = 1003, 500
	d := load(t, c)
	if d.Train.N != 1003 || d.Test.N != 500 {
		t.Fatalf("got %d/%d", d.Train.N, d.Test.N)
	}
	for _, n := range counts(d.Train.Labels, 10) {
		if n != 100 && n != 101 {
			t.Fatalf("unbalanced train subset: %v", counts(d.Train.Labels, 10))
		}
	}
	d2 := load(t, c)
	if !slices.Equal(d.Train.Labels, d2.Train.Labels) || !slices.Equal(d.Train.Images[:5000], d2.Train.Images[:5000]) {
		t.Fatal("same subset_seed gave a different subset")
	}
}

func writeImages(t *testing.T, root string, classes []string, per int) {
	t.Helper()
	for k, cls := range classes {
		dir := filepath.Join(root, cls)
		os.MkdirAll(dir, 0o755)
		for i := 0; i < per; i++ {
			im := image.NewRGBA(image.Rect(0, 0, 20+i, 16))
			for y := 0; y < 16; y++ {
				for x := 0; x < 20+i; x++ {
					im.Set(x, y, color.RGBA{uint8(80 * k), uint8(10 * i), uint8(x * 10), 255})
				}
			}
			var err error
			if i%2 == 0 {
				f, _ := os.Create(filepath.Join(dir, "im"+string(rune('a'+i))+".png"))
				err = png.Encode(f, im)
				f.Close()
			} else {
				f, _ := os.Create(filepath.Join(dir, "im"+string(rune('a'+i))+".jpg"))
				err = jpeg.Encode(f, im, nil)
				f.Close()
			}
			if err != nil {
				t.Fatal(err)
			}
		}
	}
}

func TestImageFolder(t *testing.T) {
	root := t.TempDir()
	writeImages(t, root, []string{"cat", "dog", "owl"}, 5)
	os.WriteFile(filepath.Join(root, "cat", "notes.txt"), []byte("not an image"), 0o644)
	c := defaults("imagefolder")
	c.Root, c.ImageSize, c.PatchSize = root, 12, 4
	d := load(t, c)
	if d.Classes != 3 || d.Train.N+d.Test.N != 15 || d.Test.N != 3 || d.Channels != 3 || d.Size != 12 {
		t.Fatalf("imagefolder: classes %d, %d train, %d test, %dx%d", d.Classes, d.Train.N, d.Test.N, d.Channels, d.Size)
	}
	if len(d.Train.Images) != d.Train.N*3*12*12 {
		t.Fatalf("image buffer %d", len(d.Train.Images))
	}
	// train/ and test/ subfolders are used as given, gray conversion on request.
	root2 := t.TempDir()
	writeImages(t, filepath.Join(root2, "train"), []string{"a", "b"}, 4)
	writeImages(t, filepath.Join(root2, "test"), []string{"a", "b"}, 2)
	c.Root, c.Channels = root2, 1
	d = load(t, c)
	if d.Train.N != 8 || d.Test.N != 4 || d.Channels != 1 {
		t.Fatalf("train/test folders: %d/%d, channels %d", d.Train.N, d.Test.N, d.Channels)
	}
}

func TestLoaderDeterministicAndResumable(t *testing.T) {
	c := defaults("synthetic")
	d := load(t, c)
	cfg := LoaderConfig{BatchSize: 32, Seed: 7, Shuffle: true, Augment: []string{"random_resized_crop", "hflip"}, CropScale: [2]float64{0.5, 1}, DropLast: true}
	a, b := NewLoader(d, &d.Train, cfg, 0), NewLoader(d, &d.Train, cfg, 0)
	defer a.Close()
	defer b.Close()
	var batches []Batch
	for i := 0; i < 70; i++ { // past an epoch boundary (62 batches per epoch)
		x, y := a.Next(), b.Next()
		if !slices.Equal(x.Images, y.Images) || !slices.Equal(x.Labels, y.Labels) {
			t.Fatalf("batch %d differs between two loaders with one seed", i)
		}
		batches = append(batches, x)
	}
	r := NewLoader(d, &d.Train, cfg, 65) // resumed at step 65
	defer r.Close()
	if got := r.Next(); !slices.Equal(got.Images, batches[65].Images) {
		t.Fatal("a loader resumed at step 65 does not give batch 65")
	}
	cfg.Seed = 8
	o := NewLoader(d, &d.Train, cfg, 0)
	defer o.Close()
	if slices.Equal(o.Next().Index, batches[0].Index) {
		t.Fatal("another seed gave the same order")
	}
}

func TestAugmentationsKeepShapeAndRange(t *testing.T) {
	c := defaults("synthetic")
	c.Channels = 3
	d := load(t, c)
	cases := [][]string{{"random_resized_crop"}, {"hflip"}, {"random_resized_crop", "hflip"}}
	for _, aug := range cases {
		l := NewLoader(d, &d.Train, LoaderConfig{BatchSize: 16, Seed: 1, Augment: aug, CropScale: [2]float64{0.3, 1}, DropLast: true}, 0)
		b := l.Next()
		l.Close()
		if len(b.Images) != 16*3*28*28 {
			t.Fatalf("%v: %d values, want %d", aug, len(b.Images), 16*3*28*28)
		}
		if mn, mx := slices.Min(b.Images), slices.Max(b.Images); mn < 0 || mx > 1 {
			t.Fatalf("%v: values in [%v, %v], want within [0, 1]", aug, mn, mx)
		}
		plain := d.Train.Images[b.Index[0]*d.ImageLen() : (b.Index[0]+1)*d.ImageLen()]
		if slices.Equal(plain, b.Images[:d.ImageLen()]) && slices.Equal(aug, []string{"random_resized_crop"}) {
			t.Fatalf("%v did not change the image", aug)
		}
	}
	// hflip twice is the identity.
	img := slices.Clone(d.Train.Images[:d.ImageLen()])
	hflip(img, 3, 28)
	hflip(img, 3, 28)
	if !slices.Equal(img, d.Train.Images[:d.ImageLen()]) {
		t.Fatal("hflip twice is not the identity")
	}
}

func TestBadDataConfig(t *testing.T) {
	corrupt := t.TempDir()
	os.WriteFile(filepath.Join(corrupt, "train-images-idx3-ubyte.gz"), []byte("garbage"), 0o644)
	os.WriteFile(filepath.Join(corrupt, "train-labels-idx1-ubyte.gz"), []byte("garbage"), 0o644)
	empty := t.TempDir()
	cases := []struct {
		name string
		edit func(c *Config)
		want []string
	}{
		{"patch does not divide", func(c *Config) { c.ImageSize, c.PatchSize = 30, 4 }, []string{"data.image_size = 30", "patch_size 4 must divide"}},
		{"unknown dataset", func(c *Config) { c.Name = "cifar" }, []string{`data.name = "cifar"`, "fashion-mnist", "imagefolder", "mnist", "synthetic"}},
		{"missing fashion", func(c *Config) { c.Name, c.Root = "fashion-mnist", "/nonexistent/fashion" }, []string{"dataset-fashion-mnist", "data.root"}},
		{"corrupt idx", func(c *Config) { c.Root = corrupt }, []string{"corrupt gzip", "train-images-idx3-ubyte.gz"}},
		{"empty mnist dir", func(c *Config) { c.Root = empty }, []string{"not found in " + empty}},
		{"imagefolder without root", func(c *Config) { c.Name, c.Root = "imagefolder", "" }, []string{"data.root"}},
		{"imagefolder wrong path", func(c *Config) { c.Name, c.Root = "imagefolder", "/no/such/folder" }, []string{`data.root = "/no/such/folder"`}},
		{"bad augmentation", func(c *Config) { c.Augment = []string{"colorjitter"} }, []string{"colorjitter", "random_resized_crop, hflip"}},
		{"bad channels", func(c *Config) { c.Channels = 2 }, []string{"data.channels = 2", "1, 3"}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			c := defaults("mnist")
			tc.edit(c)
			if n := c.Name; n != "mnist" {
				*c = *withName(c, n)
			}
			_, err := Load(c)
			if err == nil {
				t.Fatal("no error")
			}
			for _, w := range tc.want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("error %q lacks %q", err, w)
				}
			}
		})
	}
}

// withName applies a name's defaults under the edited fields that matter for the test.
func withName(c *Config, name string) *Config {
	d := defaults(name)
	d.Root, d.Augment, d.Channels = c.Root, c.Augment, c.Channels
	return d
}

// A loader with no batch to make (a batch larger than the split) says so through Next instead of panicking
// in its goroutine, which would end the whole process rather than one trial.
func TestLoaderErrorsInsteadOfPanicking(t *testing.T) {
	c := defaults("synthetic")
	c.NumTrain, c.NumTest = 8, 8
	d := load(t, c)
	l := NewLoader(d, &d.Train, LoaderConfig{BatchSize: 16, Seed: 1, Shuffle: true, DropLast: true}, 0)
	defer l.Close()
	if b := l.Next(); b.Err == nil || !strings.Contains(b.Err.Error(), "8 images give no batch of 16") {
		t.Fatalf("got %v", b.Err)
	}
}

// TestResizeAfterSubset: MNIST takes its class-balanced subsets before resizing (so a 56x56 run does not
// hold all 70,000 resized images); the images, labels and train statistics are those of resizing each
// image of the native-size subset, and the subsets are the same.
func TestResizeAfterSubset(t *testing.T) {
	native := defaults("mnist")
	native.TrainLimit, native.TestLimit = 300, 100
	big := *native
	big.ImageSize, big.PatchSize = 56, 4
	a, b := load(t, native), load(t, &big)
	if b.Size != 56 || b.Train.N != 300 || b.Test.N != 100 {
		t.Fatalf("56x56 load: %d/%d images of size %d", b.Train.N, b.Test.N, b.Size)
	}
	for _, sp := range []struct {
		name   string
		nat, r Split
	}{{"train", a.Train, b.Train}, {"test", a.Test, b.Test}} {
		for i := 0; i < sp.nat.N; i++ {
			if sp.nat.Labels[i] != sp.r.Labels[i] {
				t.Fatalf("%s image %d: label %d, native-size subset %d", sp.name, i, sp.r.Labels[i], sp.nat.Labels[i])
			}
			want := resizeBilinear(sp.nat.Images[i*784:(i+1)*784], 1, 28, 28, 56, 56)
			for j, v := range want {
				if sp.r.Images[i*3136+j] != v {
					t.Fatalf("%s image %d pixel %d: %v, resized native %v", sp.name, i, j, sp.r.Images[i*3136+j], v)
				}
			}
		}
	}
	mean, std := channelStats(b.Train, 1, 56)
	if mean[0] != b.Mean[0] || std[0] != b.Std[0] {
		t.Errorf("train statistics %v/%v, of the resized images %v/%v", b.Mean, b.Std, mean, std)
	}
}

// TestSubsetBeforeConvert: MNIST converts to float32 only the images its subsets keep; the subsets, their
// images and the train statistics are those of converting all 70,000 and then taking the subsets.
func TestSubsetBeforeConvert(t *testing.T) {
	all := defaults("mnist")
	all.TrainLimit, all.TestLimit = 0, 0
	some := *all
	some.TrainLimit, some.TestLimit = 300, 100
	full, sub := load(t, all), load(t, &some)
	for _, sp := range []struct {
		name   string
		full   Split
		limit  int
		seed   uint64
		subset Split
	}{{"train", full.Train, 300, some.SubsetSeed, sub.Train}, {"test", full.Test, 100, some.SubsetSeed + 1, sub.Test}} {
		want := sp.full.subset(balancedSubset(sp.full.Labels, 10, sp.limit, sp.seed), 784)
		if sp.subset.N != want.N || !slices.Equal(sp.subset.Labels, want.Labels) || !slices.Equal(sp.subset.Images, want.Images) {
			t.Fatalf("%s: %d images (labels equal %v, pixels equal %v), converting all then subsetting gives %d",
				sp.name, sp.subset.N, slices.Equal(sp.subset.Labels, want.Labels), slices.Equal(sp.subset.Images, want.Images), want.N)
		}
	}
	mean, std := channelStats(full.Train.subset(balancedSubset(full.Train.Labels, 10, 300, some.SubsetSeed), 784), 1, 28)
	if mean[0] != sub.Mean[0] || std[0] != sub.Std[0] {
		t.Errorf("train statistics %v/%v, want %v/%v", sub.Mean, sub.Std, mean, std)
	}
	if full.Train.N != 60000 || full.Test.N != 10000 {
		t.Errorf("no limits: %d/%d images, want 60000/10000", full.Train.N, full.Test.N)
	}
}

// A loader asked for two views gives, per image, a second view augmented apart from the first (the views
// differ) from a seeded source (a second loader with the same seed gives the same pairs, a resumed one the
// same batch), and leaves the first view bit-identical to a one-view loader's (the methods that ask for one
// view keep their numbers). Without augmentation the two views are the image twice.
func TestLoaderTwoViews(t *testing.T) {
	c := defaults("synthetic")
	d := load(t, c)
	cases := []struct {
		name string
		aug  []string
	}{
		{"crop", []string{"random_resized_crop"}},
		{"crop+flip", []string{"random_resized_crop", "hflip"}},
		{"none", nil},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			one := LoaderConfig{BatchSize: 16, Seed: 3, Shuffle: true, Augment: tc.aug, CropScale: [2]float64{0.3, 1}, Normalize: true, DropLast: true}
			two := one
			two.TwoViews = true
			l1, l2, l3 := NewLoader(d, &d.Train, one, 0), NewLoader(d, &d.Train, two, 0), NewLoader(d, &d.Train, two, 0)
			defer l1.Close()
			defer l2.Close()
			defer l3.Close()
			resumed := NewLoader(d, &d.Train, two, 2)
			defer resumed.Close()
			var third Batch
			for step := 0; step < 3; step++ {
				a, b, b2 := l1.Next(), l2.Next(), l3.Next()
				if a.Images2 != nil {
					t.Fatal("a one-view loader gave a second view")
				}
				if len(b.Images2) != len(b.Images) {
					t.Fatalf("step %d: second view has %d values, first %d", step, len(b.Images2), len(b.Images))
				}
				if !slices.Equal(a.Images, b.Images) {
					t.Fatalf("step %d: asking for a second view changed the first", step)
				}
				if !slices.Equal(b.Images2, b2.Images2) {
					t.Fatalf("step %d: two loaders with one seed gave different second views", step)
				}
				n := d.ImageLen()
				same := 0
				for j := 0; j < 16; j++ {
					if slices.Equal(b.Images[j*n:(j+1)*n], b.Images2[j*n:(j+1)*n]) {
						same++
					}
				}
				if tc.aug != nil && same > 0 {
					t.Fatalf("step %d: %d of 16 images have two identical views under %v", step, same, tc.aug)
				}
				if tc.aug == nil && same != 16 {
					t.Fatalf("step %d: without augmentation %d of 16 pairs are identical, want all", step, same)
				}
				third = b
			}
			if r := resumed.Next(); !slices.Equal(r.Images2, third.Images2) || !slices.Equal(r.Images, third.Images) {
				t.Fatal("a loader resumed at step 2 does not give batch 2's views")
			}
		})
	}
}
