package nn

import (
	"archive/tar"
	"compress/gzip"
	"context"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"

	"github.com/gomlx/compute"
	_ "github.com/gomlx/compute-onnx" // ONNX Runtime backend ("onnx"): the fast CPU path
	_ "github.com/gomlx/compute/gobackend"
)

// ORTPackage is the npm package whose tarball ships libonnxruntime.so for Linux x64.
const ORTPackage = "onnxruntime-node@1.30.0"

const ortMember = "package/bin/napi-v6/linux/x64/libonnxruntime.so.1"

// Backends lists the names --backend accepts.
var Backends = []string{"auto", "ort", "go", "xla"}

// ORTLibraryPath is where mimlab looks for libonnxruntime.so: $ONNXRUNTIME_SHARED_LIBRARY_PATH if set, else
// the place FetchORT puts it ($MIMLAB_CACHE, or the user cache dir, /mimlab/onnxruntime-node-1.30.0/).
func ORTLibraryPath() string {
	if p := os.Getenv("ONNXRUNTIME_SHARED_LIBRARY_PATH"); p != "" {
		return p
	}
	return filepath.Join(cacheDir(), "onnxruntime-node-1.30.0", "libonnxruntime.so.1")
}

func cacheDir() string {
	if d := os.Getenv("MIMLAB_CACHE"); d != "" {
		return d
	}
	d, err := os.UserCacheDir()
	if err != nil {
		d = os.TempDir()
	}
	return filepath.Join(d, "mimlab")
}

// ORTAvailable says whether the ONNX Runtime library is where ORTLibraryPath points.
func ORTAvailable() bool {
	st, err := os.Stat(ORTLibraryPath())
	return err == nil && st.Mode().IsRegular()
}

// FetchORT downloads the npm package onnxruntime-node (through npm, from the npm registry) and extracts its
// Linux x64 libonnxruntime.so.1 to ORTLibraryPath. It is what `sweep fetch-ort` runs, and what backend
// "auto" runs once when the library is missing and npm is installed (unless MIMLAB_NO_FETCH=1).
func FetchORT(ctx context.Context, log io.Writer) (string, error) {
	dest := filepath.Join(cacheDir(), "onnxruntime-node-1.30.0", "libonnxruntime.so.1")
	if os.Getenv("ONNXRUNTIME_SHARED_LIBRARY_PATH") != "" {
		dest = os.Getenv("ONNXRUNTIME_SHARED_LIBRARY_PATH")
	}
	if st, err := os.Stat(dest); err == nil && st.Mode().IsRegular() {
		return dest, nil
	}
	npm, err := exec.LookPath("npm")
	if err != nil {
		return "", fmt.Errorf("fetching ONNX Runtime needs npm (apt-get install npm), or set ONNXRUNTIME_SHARED_LIBRARY_PATH to a libonnxruntime.so: %w", err)
	}
	tmp, err := os.MkdirTemp("", "mimlab-ort-")
	if err != nil {
		return "", err
	}
	defer os.RemoveAll(tmp)
	fmt.Fprintf(log, "mimlab: fetching %s from the npm registry for the ONNX Runtime CPU backend (113 MB, once)...\n", ORTPackage)
	cmd := exec.CommandContext(ctx, npm, "pack", ORTPackage, "--pack-destination", tmp)
	cmd.Dir = tmp
	if out, err := cmd.CombinedOutput(); err != nil {
		return "", fmt.Errorf("npm pack %s: %w\n%s", ORTPackage, err, lastLines(string(out), 5))
	}
	tgz := filepath.Join(tmp, "onnxruntime-node-1.30.0.tgz")
	if err := extractMember(tgz, ortMember, dest); err != nil {
		return "", fmt.Errorf("extracting %s from %s: %w", ortMember, tgz, err)
	}
	fmt.Fprintf(log, "mimlab: ONNX Runtime library at %s\n", dest)
	return dest, nil
}

func lastLines(s string, n int) string {
	lines := strings.Split(strings.TrimSpace(s), "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return strings.Join(lines, "\n")
}

func extractMember(tgz, member, dest string) error {
	f, err := os.Open(tgz)
	if err != nil {
		return err
	}
	defer f.Close()
	zr, err := gzip.NewReader(f)
	if err != nil {
		return err
	}
	tr := tar.NewReader(zr)
	for {
		h, err := tr.Next()
		if err == io.EOF {
			return fmt.Errorf("member not found")
		}
		if err != nil {
			return err
		}
		if h.Name != member {
			continue
		}
		if err := os.MkdirAll(filepath.Dir(dest), 0o755); err != nil {
			return err
		}
		tmp := dest + ".partial"
		out, err := os.OpenFile(tmp, os.O_CREATE|os.O_WRONLY|os.O_TRUNC, 0o755)
		if err != nil {
			return err
		}
		if _, err := io.Copy(out, tr); err != nil {
			out.Close()
			return err
		}
		if err := out.Close(); err != nil {
			return err
		}
		return os.Rename(tmp, dest) // atomic: a killed fetch never leaves a half library in place
	}
}

// BackendOptions tune a backend to its share of the machine.
type BackendOptions struct {
	// Threads is the ONNX Runtime intra-op thread pool of each compiled graph (0 = ORT's default, one per
	// physical core). With Threads set, the pool's threads also stop spinning between ops, so several
	// trials in one process do not burn each other's cores.
	Threads int
}

// ORTOptionsEnv names extra ONNX Runtime session options appended to the backend config, for measuring
// levers (BENCHMARKS.md): e.g. MIMLAB_ORT_OPTIONS="mem_pattern=1,arena=0" (keys: threads, inter_threads,
// spin, mem_pattern, arena, profile, dot, broadcast; see third_party/compute-onnx/MIMLAB.md). Later keys win.
// "profile=/tmp/p" there makes every session write ORT's per-node profile (bench/ort_profile.py).
const ORTOptionsEnv = "MIMLAB_ORT_OPTIONS"

// GoOptionsEnv names options of GoMLX's Go backend (e.g. "ops_sequential"; comma-separated). The Go backend
// of github.com/gomlx/compute v0.1.2 can deadlock when ops run in parallel and each saturates its worker pool
// with a large matrix product (nested-pool starvation in workerspool.Saturate): seen with bf16 products at
// ViT-S/16 size (dim 384, 196 tokens, issue 34) and in its SIMD build (engine evaluation); "ops_sequential"
// avoids it.
const GoOptionsEnv = "MIMLAB_GO_OPTIONS"

// ORTConfig is the compute-onnx backend config for o (plus $MIMLAB_ORT_OPTIONS). ORT's memory pattern is
// off: it cut peak RSS by about a fifth with no slower step (BENCHMARKS.md, issue 18).
func (o BackendOptions) ORTConfig() string {
	cfg := "onnx:cpu,mem_pattern=0"
	if o.Threads > 0 {
		cfg += fmt.Sprintf(",threads=%d,spin=0", o.Threads)
	}
	if extra := strings.TrimSpace(os.Getenv(ORTOptionsEnv)); extra != "" {
		cfg += "," + extra
	}
	return cfg
}

// NewBackend returns the execution backend for name (auto, ort, go, xla/cuda) with default options and
// the name it resolved to.
func NewBackend(name string, log io.Writer) (b compute.Backend, resolved string, err error) {
	return NewBackendWith(name, BackendOptions{}, log)
}

// NewBackendWith is NewBackend with options; log gets one-line messages for the user (auto fetching ONNX
// Runtime, or falling back to go).
func NewBackendWith(name string, o BackendOptions, log io.Writer) (b compute.Backend, resolved string, err error) {
	defer catch("starting backend "+name, &err)
	switch name {
	case "", "auto":
		if !ORTAvailable() && os.Getenv("MIMLAB_NO_FETCH") == "" {
			if _, ferr := FetchORT(context.Background(), log); ferr != nil {
				fmt.Fprintf(log, "mimlab: %v\n", ferr)
			}
		}
		if ORTAvailable() {
			return NewBackendWith("ort", o, log)
		}
		fmt.Fprintf(log, "mimlab: ONNX Runtime not found at %s: using the pure-Go backend (about 10x slower); run `go run ./cmd/sweep fetch-ort` for the fast path\n", ORTLibraryPath())
		return NewBackendWith("go", o, log)
	case "ort", "onnx":
		p := ORTLibraryPath()
		if !ORTAvailable() {
			return nil, "", fmt.Errorf("backend ort: ONNX Runtime library not found at %s: run `go run ./cmd/sweep fetch-ort` or set ONNXRUNTIME_SHARED_LIBRARY_PATH", p)
		}
		os.Setenv("ONNXRUNTIME_SHARED_LIBRARY_PATH", p)
		os.Setenv("GOMLX_NO_AUTO_INSTALL", "1")
		be, err := compute.NewWithConfig(o.ORTConfig())
		if err != nil {
			return nil, "", fmt.Errorf("%w (config %q; $%s adds to it)", err, o.ORTConfig(), ORTOptionsEnv)
		}
		return be, "ort", nil
	case "go":
		cfg := "go"
		if extra := strings.TrimSpace(os.Getenv(GoOptionsEnv)); extra != "" {
			cfg += ":" + extra
		}
		be, err := compute.NewWithConfig(cfg)
		if err != nil {
			return nil, "", err
		}
		return be, "go", nil
	case "xla", "cuda":
		return newXLABackend(name)
	default:
		return nil, "", fmt.Errorf("unknown backend %q: allowed values are %s", name, strings.Join(Backends, ", "))
	}
}
