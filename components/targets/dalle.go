package targets

import (
	"fmt"
	"os"
	"slices"
	"sync"

	"github.com/gomlx/compute"
	"github.com/gomlx/compute/dtypes"
	"github.com/gomlx/compute/shapes"
	. "github.com/gomlx/gomlx/core/graph"
	"github.com/gomlx/gomlx/core/tensors"
	timage "github.com/gomlx/gomlx/core/tensors/images"
	"mimlab/framework/registry"
	"mimlab/nn"
)

// DalleArch sizes the DALL-E dVAE encoder (cae-facts 3.1): the released one is NHid 256, 2 blocks per group,
// 4 groups, vocabulary 8,192.
type DalleArch struct {
	NHid, BlocksPerGroup, Vocab int
}

// ReleasedDalle is the architecture of OpenAI's released encoder.pkl.
var ReleasedDalle = DalleArch{NHid: 256, BlocksPerGroup: 2, Vocab: 8192}

func dalleConv(s nn.Scope, x *Node, in, out, k int) *Node {
	w := s.Param("w", []int{out, in, k, k}, nn.Init{Kind: nn.InitNormal, Std: 0.02})
	b := s.Param("b", []int{out}, nn.Init{})
	p := (k - 1) / 2
	y := Convolve(x, w).ChannelsAxis(timage.ChannelsFirst).PaddingPerDim([][2]int{{p, p}, {p, p}}).Done()
	return Add(y, Reshape(b, 1, out, 1, 1))
}

func dalleBlock(s nn.Scope, x *Node, in, out, nLayers int) *Node {
	id := x
	if in != out {
		id = dalleConv(s.Sub("id_path"), x, in, out, 1)
	}
	h := out / 4
	r := dalleConv(s.Sub("res_path.conv_1"), Max(x, ZerosLike(x)), in, h, 3)
	r = dalleConv(s.Sub("res_path.conv_2"), Max(r, ZerosLike(r)), h, h, 3)
	r = dalleConv(s.Sub("res_path.conv_3"), Max(r, ZerosLike(r)), h, h, 3)
	r = dalleConv(s.Sub("res_path.conv_4"), Max(r, ZerosLike(r)), h, out, 1)
	return Add(id, MulScalar(r, 1/float64(nLayers*nLayers)))
}

// DalleEncoder is the DALL-E encoder: x [B,3,H,W] already mapped to 0.8x+0.1 -> logits [B,vocab,H/8,W/8].
// Parameter names are the released state dict's (blocks.input.w, blocks.group_1.block_1.res_path.conv_1.w,
// ..., blocks.output.conv.w).
func DalleEncoder(s nn.Scope, a DalleArch, x *Node) *Node {
	const groups = 4
	nLayers := groups * a.BlocksPerGroup
	s = s.Sub("blocks")
	h := dalleConv(s.Sub("input"), x, 3, a.NHid, 7)
	width := a.NHid
	for g := 1; g <= groups; g++ {
		out := a.NHid << (g - 1)
		for i := 1; i <= a.BlocksPerGroup; i++ {
			h = dalleBlock(s.Subf("group_%d.block_%d", g, i), h, width, out, nLayers)
			width = out
		}
		if g < groups {
			h = MaxPool(h).ChannelsAxis(timage.ChannelsFirst).Window(2).Done()
		}
	}
	h = Max(h, ZerosLike(h))
	return dalleConv(s.Sub("output.conv"), h, width, a.Vocab, 1)
}

// DalleTokens maps images in [0,1] [B,C,S,S] (C = 1 or 3) to token ids [B, g*g]: resize to 8g x 8g (one token
// per ViT patch; 112 for a 14x14 grid as in the paper), replicate gray to RGB, 0.8x+0.1, encoder, argmax.
func DalleTokens(s nn.Scope, a DalleArch, images *Node, grid int) *Node {
	b, c := images.Shape().Dimensions[0], images.Shape().Dimensions[1]
	x := images
	if c == 1 {
		x = Concatenate([]*Node{x, x, x}, 1)
	}
	size := 8 * grid
	if x.Shape().Dimensions[2] != size {
		x = Interpolate(x, b, 3, size, size).Bilinear().AlignCorner(false).Done()
	}
	x = AddScalar(MulScalar(x, 0.8), 0.1)
	logits := DalleEncoder(s, a, x) // [B,V,g,g]
	return Reshape(ArgMax(logits, 1, dtypes.Int64), b, grid*grid)
}

// DalleConfig is [targets] for name = "dalle".
type DalleConfig struct {
	Name    string `toml:"name"`
	Weights string `toml:"weights" doc:"the released DALL-E dVAE encoder, converted to safetensors"`
}

// Validate checks the section.
func (c *DalleConfig) Validate() error {
	if c.Weights == "" {
		return fmt.Errorf("targets.weights: dalle needs the released DALL-E dVAE encoder weights: download https://cdn.openai.com/dall-e/encoder.pkl " +
			"(or mmselfsup's state_dict dalle_encoder.pth), convert it with `python3 components/targets/convert_dalle.py encoder.pkl dalle_encoder.safetensors`, " +
			"and set targets.weights = \"dalle_encoder.safetensors\"")
	}
	return nil
}

func init() {
	Registry.Register(registry.Entry[Factory]{
		Name: "dalle", Doc: "the DALL-E dVAE encoder (8,192 tokens) with its released weights from targets.weights, CE",
		NewConfig: func() registry.Config { return &DalleConfig{Name: "dalle"} },
		Build:     func(c registry.Config) (Factory, error) { return dalleFactory{*c.(*DalleConfig)}, nil },
	})
}

type dalleFactory struct{ c DalleConfig }

func (dalleFactory) Continuous() bool { return false }

func (f dalleFactory) Prepare(env Env) (Target, error) {
	if _, err := os.Stat(f.c.Weights); err != nil {
		return nil, fmt.Errorf("targets.weights = %q: %v (see targets.name = \"dalle\" in README for where the released weights come from)", f.c.Weights, err)
	}
	arrays, _, err := nn.LoadSafetensors(f.c.Weights)
	if err != nil {
		return nil, fmt.Errorf("targets.weights = %q: %w", f.c.Weights, err)
	}
	arch, err := inferDalleArch(arrays)
	if err != nil {
		return nil, fmt.Errorf("targets.weights = %q: %w", f.c.Weights, err)
	}
	mean, std := env.Data.Mean, env.Data.Std
	tok, err := NewDalleTokenizer(env.Backend, arch, arrays, env.Data.Channels, env.Data.Size/env.Patch)
	if err != nil {
		return nil, fmt.Errorf("targets.weights = %q: %w", f.c.Weights, err)
	}
	tok.path = f.c.Weights
	if env.Normalized {
		tok.mean, tok.std = mean, std
	}
	return tokenTarget{tok}, nil
}

// inferDalleArch reads the width, blocks per group and vocabulary from the weights' shapes.
func inferDalleArch(a map[string]nn.Array) (DalleArch, error) {
	in, ok := a["blocks.input.w"]
	if !ok || len(in.Shape) != 4 {
		return DalleArch{}, fmt.Errorf("not a DALL-E encoder state dict (no blocks.input.w [n_hid,3,7,7])")
	}
	out, ok := a["blocks.output.conv.w"]
	if !ok {
		return DalleArch{}, fmt.Errorf("no blocks.output.conv.w")
	}
	n := 0
	for {
		if _, ok := a[fmt.Sprintf("blocks.group_1.block_%d.res_path.conv_1.w", n+1)]; !ok {
			break
		}
		n++
	}
	if n == 0 {
		return DalleArch{}, fmt.Errorf("no blocks.group_1.block_1")
	}
	arch := DalleArch{NHid: in.Shape[0], BlocksPerGroup: n, Vocab: out.Shape[0]}
	// The shapes read from the file size the model built from them: each is checked against the released
	// architecture's form and bounds, and against the values the file holds, before anything is allocated
	// (a header claiming [1e8, 0, 7, 7] with no bytes would otherwise declare a model of tens of GB).
	switch {
	case !slices.Equal(in.Shape, []int{arch.NHid, 3, 7, 7}) || arch.NHid < 1 || arch.NHid > maxDalleHid:
		return DalleArch{}, fmt.Errorf("blocks.input.w has shape %v: want [n_hid, 3, 7, 7] with n_hid in [1, %d] (the released encoder: 256)", in.Shape, maxDalleHid)
	case !slices.Equal(out.Shape, []int{arch.Vocab, 8 * arch.NHid, 1, 1}) || arch.Vocab < 2 || arch.Vocab > maxDalleVocab:
		return DalleArch{}, fmt.Errorf("blocks.output.conv.w has shape %v: want [vocab, 8 n_hid = %d, 1, 1] with vocab in [2, %d] (the released encoder: 8192)", out.Shape, 8*arch.NHid, maxDalleVocab)
	case n > maxDalleBlocks:
		return DalleArch{}, fmt.Errorf("%d blocks per group: at most %d (the released encoder: 2)", n, maxDalleBlocks)
	}
	for name, x := range a {
		if x.Size() != len(x.F32)+len(x.I64) {
			return DalleArch{}, fmt.Errorf("%s: shape %v holds %d values, the file %d", name, x.Shape, x.Size(), len(x.F32)+len(x.I64))
		}
	}
	return arch, nil
}

// Bounds on the DALL-E encoder a weights file may describe (the released one is n_hid 256, 2 blocks per
// group, vocabulary 8192): at the bounds the model has about 5.8e8 parameters (2.3 GB), not the terabytes a
// forged header can claim.
const (
	maxDalleHid    = 512
	maxDalleVocab  = 65536
	maxDalleBlocks = 4
)

// DalleTokenizer runs the DALL-E encoder on image batches.
type DalleTokenizer struct {
	arch     DalleArch
	backend  compute.Backend
	set      *nn.ParamSet
	params   []*tensors.Tensor
	channels int
	grid     int
	path     string
	mean     []float32 // set when the loader normalises: images are mapped back to [0,1] first
	std      []float32
	mu       sync.Mutex
	progs    map[string]*nn.Program
}

// NewDalleTokenizer loads weights (DALL-E names) into an encoder for images of channels x (8 grid)^2... any
// size (they are resized to 8*grid).
func NewDalleTokenizer(be compute.Backend, arch DalleArch, arrays map[string]nn.Array, channels, grid int) (*DalleTokenizer, error) {
	t := &DalleTokenizer{arch: arch, backend: be, channels: channels, grid: grid, progs: map[string]*nn.Program{}}
	set, err := nn.Declare(be, dtypes.Float32, false, []shapes.Shape{shapes.Make(dtypes.Float32, 1, channels, 8*grid, 8*grid)},
		func(s nn.Scope, in []*Node) []*Node { return []*Node{DalleTokens(s, arch, in[0], grid)} })
	if err != nil {
		return nil, err
	}
	t.set = set
	t.params = set.InitParams(dtypes.Float32, 0)
	if err := nn.FromArrays(set, arrays, "", t.params); err != nil {
		return nil, err
	}
	return t, nil
}

// Logits returns the encoder's logits for images already at 8*grid and mapped (tests compare with PyTorch).
func (t *DalleTokenizer) Logits(x *tensors.Tensor) ([]float32, error) {
	prog, err := nn.Compile(t.backend, t.set, dtypes.Float32, false, []shapes.Shape{x.Shape()}, func(s nn.Scope, in []*Node) []*Node {
		return []*Node{DalleEncoder(s, t.arch, in[0])}
	})
	if err != nil {
		return nil, err
	}
	defer prog.Finalize()
	o, err := prog.Run(t.params, nil, x)
	if err != nil {
		return nil, err
	}
	defer nn.Free(o...)
	return nn.Float32s(o[0]), nil
}

// Tokenize implements Tokenizer.
func (t *DalleTokenizer) Tokenize(images []float32, batch int) ([]int64, error) {
	n := len(images) / batch / t.channels
	size := 1
	for size*size < n {
		size++
	}
	img := images
	if t.mean != nil { // undo the loader's normalisation: the DALL-E encoder wants [0,1]
		img = make([]float32, len(images))
		hw := size * size
		for i := range images {
			ch := (i / hw) % t.channels
			img[i] = images[i]*t.std[ch] + t.mean[ch]
		}
	}
	key := fmt.Sprint(batch, size)
	t.mu.Lock()
	defer t.mu.Unlock()
	prog, ok := t.progs[key]
	if !ok {
		var err error
		prog, err = nn.Compile(t.backend, t.set, dtypes.Float32, false, []shapes.Shape{shapes.Make(dtypes.Float32, batch, t.channels, size, size)},
			func(s nn.Scope, in []*Node) []*Node { return []*Node{DalleTokens(s, t.arch, in[0], t.grid)} })
		if err != nil {
			return nil, err
		}
		t.progs[key] = prog
	}
	in := tensors.FromFlatDataAndDimensions(img, batch, t.channels, size, size)
	defer nn.Free(in)
	o, err := prog.Run(t.params, nil, in)
	if err != nil {
		return nil, err
	}
	defer nn.Free(o...)
	return tensors.MustCopyFlatData[int64](o[0]), nil
}

// Vocab implements Tokenizer.
func (t *DalleTokenizer) Vocab() int { return t.arch.Vocab }

// Info implements Tokenizer.
func (t *DalleTokenizer) Info() map[string]float64 {
	return map[string]float64{"vocab": float64(t.arch.Vocab), "n_hid": float64(t.arch.NHid)}
}

// Path implements Tokenizer.
func (t *DalleTokenizer) Path() string { return t.path }

// Close frees the encoder's parameters and compiled programs.
func (t *DalleTokenizer) Close() {
	t.mu.Lock()
	defer t.mu.Unlock()
	for _, p := range t.progs {
		p.Finalize()
	}
	t.progs = nil
	nn.Free(t.params...)
	t.params = nil
}
