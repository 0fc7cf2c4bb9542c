package data

import (
	"fmt"
	"math/rand/v2"
	"slices"
)

// Batch is one batch: Images B x C x S x S float32, Labels B, and the sample indices it holds.
type Batch struct {
	Images []float32
	// Images2 is a second view of the same images (LoaderConfig.TwoViews), augmented independently of the
	// first from its own seeded source; nil otherwise.
	Images2 []float32
	Labels  []int64
	Index   []int
	Step    int
	Err     error // the loader failed; no images
}

// LoaderConfig says how batches are made.
type LoaderConfig struct {
	BatchSize int
	Seed      uint64
	Shuffle   bool     // a fresh seeded permutation every epoch; false = dataset order
	Augment   []string // random_resized_crop, hflip
	CropScale [2]float64
	Normalize bool // subtract the train mean, divide by the train std (per channel)
	DropLast  bool // only full batches (static shapes for training); else the last batch is short
	// TwoViews adds Batch.Images2, a second view of every image (contrastive methods: MoCo v3). Its
	// augmentation draws from a source of its own, keyed by (seed, step, sample) like the first view's, so
	// the first view is bit-identical with or without it and a resumed run gets the same pairs.
	TwoViews bool
}

// Stream keys of the per-sample augmentation sources: the first view's ("aug") and the second's ("view2").
const (
	augKey   = 0x617567
	view2Key = 0x7669657732
)

// Loader yields batches in an order fixed by the seed: batch `step` is a pure function of (seed, step),
// so a resumed trial continues exactly. A background goroutine prepares the next batches.
type Loader struct {
	ds      *Dataset
	split   *Split
	cfg     LoaderConfig
	perEp   int
	out     chan Batch
	stop    chan struct{}
	permEp  int
	permBuf []int
}

// NewLoader starts a loader over split (d.Train or d.Test) whose first batch is startStep.
func NewLoader(d *Dataset, split *Split, cfg LoaderConfig, startStep int) *Loader {
	l := &Loader{ds: d, split: split, cfg: cfg, out: make(chan Batch, 3), stop: make(chan struct{}), permEp: -1}
	if cfg.DropLast {
		l.perEp = split.N / cfg.BatchSize
	} else {
		l.perEp = (split.N + cfg.BatchSize - 1) / cfg.BatchSize
	}
	go l.run(startStep)
	return l
}

// StepsPerEpoch is the number of batches in one pass.
func (l *Loader) StepsPerEpoch() int { return l.perEp }

// Next returns the next batch; its Err is set when the loader failed (and then it stops).
func (l *Loader) Next() Batch {
	b, ok := <-l.out
	if !ok {
		return Batch{Err: fmt.Errorf("data loader stopped")}
	}
	return b
}

// Close stops the background goroutine.
func (l *Loader) Close() {
	close(l.stop)
	for range l.out {
	}
}

func (l *Loader) run(step int) {
	defer close(l.out)
	defer func() {
		// A panic here would end the whole process, not one trial: it becomes the trial's error.
		if r := recover(); r != nil {
			select {
			case l.out <- Batch{Err: fmt.Errorf("data loader at step %d: %v", step, r)}:
			case <-l.stop:
			}
		}
	}()
	if l.perEp < 1 {
		select {
		case l.out <- Batch{Err: fmt.Errorf("data loader: %d images give no batch of %d", l.split.N, l.cfg.BatchSize)}:
		case <-l.stop:
		}
		return
	}
	for ; ; step++ {
		b := l.Make(step)
		select {
		case l.out <- b:
		case <-l.stop:
			return
		}
	}
}

func (l *Loader) perm(epoch int) []int {
	if l.permEp == epoch {
		return l.permBuf
	}
	p := make([]int, l.split.N)
	for i := range p {
		p[i] = i
	}
	if l.cfg.Shuffle {
		r := rand.New(rand.NewPCG(l.cfg.Seed, uint64(epoch)))
		r.Shuffle(len(p), func(a, b int) { p[a], p[b] = p[b], p[a] })
	}
	l.permEp, l.permBuf = epoch, p
	return p
}

// Make builds batch `step` (synchronously; Next is the background path).
func (l *Loader) Make(step int) Batch {
	if l.perEp == 0 {
		return Batch{Step: step}
	}
	epoch, k := step/l.perEp, step%l.perEp
	perm := l.perm(epoch)
	lo, hi := k*l.cfg.BatchSize, min((k+1)*l.cfg.BatchSize, len(perm))
	idx := slices.Clone(perm[lo:hi])
	d := l.ds
	n := d.ImageLen()
	b := Batch{Images: make([]float32, 0, len(idx)*n), Labels: make([]int64, len(idx)), Index: idx, Step: step}
	if l.cfg.TwoViews {
		b.Images2 = make([]float32, 0, len(idx)*n)
	}
	for j, i := range idx {
		img := l.split.Images[i*n : (i+1)*n]
		b.Images = l.view(b.Images, img, augKey, step, j)
		if l.cfg.TwoViews {
			b.Images2 = l.view(b.Images2, img, view2Key, step, j)
		}
		b.Labels[j] = int64(l.split.Labels[i])
	}
	return b
}

// view appends one view of img to dst: augmented from the source keyed by (seed ^ key, step, sample j) when
// the loader augments, then normalised when it normalises.
func (l *Loader) view(dst, img []float32, key uint64, step, j int) []float32 {
	d := l.ds
	if len(l.cfg.Augment) > 0 {
		r := rand.New(rand.NewPCG(l.cfg.Seed^key, uint64(step)<<20|uint64(j)))
		img = slices.Clone(img)
		for _, a := range l.cfg.Augment {
			switch a {
			case "random_resized_crop":
				img = randomResizedCrop(img, d.Channels, d.Size, l.cfg.CropScale, r)
			case "hflip":
				if r.IntN(2) == 1 {
					hflip(img, d.Channels, d.Size)
				}
			}
		}
	}
	start := len(dst)
	dst = append(dst, img...)
	if l.cfg.Normalize {
		hw := d.Size * d.Size
		for ch := 0; ch < d.Channels; ch++ {
			seg := dst[start+ch*hw : start+(ch+1)*hw]
			m, s := d.Mean[ch], d.Std[ch]
			for t := range seg {
				seg[t] = (seg[t] - m) / s
			}
		}
	}
	return dst
}
