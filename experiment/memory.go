package experiment

import (
	"fmt"
	"os"
	"strconv"
	"strings"

	"mimlab/components/method"
	"mimlab/framework/spec"
)

// EstimateBytes is a rough upper estimate of the memory one trial needs: the dataset's images (float32,
// kept twice while resizing) and the training step's intermediates, which ONNX Runtime keeps for the
// backward pass (per block: about 30 activations of B x T x D and 3 attention maps of B x H x T x T).
// imagefolder's image count is unknown before its folder is read, so it counts only the model.
func EstimateBytes(res *spec.Resolved) uint64 {
	c := Typed(res)
	d := c.Data
	s, p := uint64(d.ImageSize), uint64(max(d.PatchSize, 1))
	ch := uint64(d.Channels)
	if ch == 0 {
		ch = 3
		if d.Name == "mnist" || d.Name == "fashion-mnist" {
			ch = 1
		}
	}
	var n uint64
	switch {
	case d.NumTrain > 0 || d.NumTest > 0:
		n = uint64(d.NumTrain + d.NumTest)
	case d.Root == "" && (d.Name == "mnist" || d.Name == "fashion-mnist"):
		n = 70000
	}
	images := 2 * n * ch * s * s * 4
	enc := spec.Values(res.Sections["encoder"], false)
	dim, _ := enc["dim"].(int64)
	depth, _ := enc["depth"].(int64)
	heads, _ := enc["heads"].(int64)
	for _, k := range []string{"regressor", "decoder"} {
		if dd, ok := spec.Values(res.Sections[k], false)["depth"].(int64); ok {
			depth += dd
		}
	}
	b, t := uint64(d.BatchSize), (s/p)*(s/p)+1
	blocks := uint64(max(depth, 1))
	act := blocks * (30*b*t*uint64(max(dim, 1)) + 3*b*uint64(max(heads, 1))*t*t) * 4
	params := blocks * 12 * uint64(dim*dim) * 4 * 4 // weights, gradients, two AdamW moments
	// A method with two views runs its encoder twice per step; an EMA teacher adds its weights and a
	// forward pass per view whose activations are not kept for a backward pass (about half).
	if m, err := build(method.Registry, c, "method"); err == nil {
		views := uint64(1)
		if m.Needs().TwoViews {
			views = 2
		}
		act *= views
		if _, ok := m.(method.Teacher); ok {
			act += act / 2
			params += blocks * 12 * uint64(dim*dim) * 4
		}
	}
	return images + act + params
}

// AvailableBytes is the memory a trial may use: MIMLAB_MAX_MEMORY (bytes, or with a K/M/G suffix) when
// set, else the machine's MemAvailable; 0 when neither is known.
func AvailableBytes() (uint64, error) {
	if v := os.Getenv("MIMLAB_MAX_MEMORY"); v != "" {
		b, err := ParseBytes(v)
		if err != nil {
			return 0, fmt.Errorf("MIMLAB_MAX_MEMORY=%q: %w", v, err)
		}
		return b, nil
	}
	text, err := os.ReadFile("/proc/meminfo")
	if err != nil {
		return 0, nil
	}
	for _, l := range strings.Split(string(text), "\n") {
		if f := strings.Fields(l); len(f) >= 2 && f[0] == "MemAvailable:" {
			kb, err := strconv.ParseUint(f[1], 10, 64)
			if err == nil {
				return kb * 1024, nil
			}
		}
	}
	return 0, nil
}

// ParseBytes reads "512M", "24G", "1048576".
func ParseBytes(v string) (uint64, error) {
	mult := uint64(1)
	switch {
	case strings.HasSuffix(v, "K"):
		mult, v = 1<<10, strings.TrimSuffix(v, "K")
	case strings.HasSuffix(v, "M"):
		mult, v = 1<<20, strings.TrimSuffix(v, "M")
	case strings.HasSuffix(v, "G"):
		mult, v = 1<<30, strings.TrimSuffix(v, "G")
	}
	n, err := strconv.ParseUint(v, 10, 64)
	if err != nil || n == 0 || n > (1<<63)/mult {
		return 0, fmt.Errorf("want a positive size such as 512M or 24G")
	}
	return n * mult, nil
}

// CheckMemory refuses a trial whose estimate exceeds the available memory, before anything runs.
func CheckMemory(res *spec.Resolved, avail uint64) error {
	if avail == 0 {
		return nil
	}
	if need := EstimateBytes(res); need > avail {
		c := Typed(res)
		return &spec.Error{File: res.File, Msg: fmt.Sprintf("one trial needs about %.1f GB (data.batch_size = %d, data.image_size = %d, encoder %v; dataset images included), more than the %.1f GB available (MIMLAB_MAX_MEMORY or the machine's free memory): lower the batch, the image size or the dataset size",
			float64(need)/1e9, c.Data.BatchSize, c.Data.ImageSize, spec.Values(res.Sections["encoder"], false), float64(avail)/1e9)}
	}
	return nil
}
