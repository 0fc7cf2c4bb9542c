//go:build xla

package nn

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"

	"github.com/gomlx/compute"
	"github.com/gomlx/go-xla/compute/xla"
)

// newXLABackend starts GoMLX's XLA backend on a PJRT CUDA plugin, with automatic downloads switched off:
// mimlab never fetches anything at run time. Plugins are looked for in $PJRT_PLUGIN_LIBRARY_PATH (a
// ":"-separated list), ~/.local/lib/go-xla, /usr/local/lib/go-xla, then LD_LIBRARY_PATH and ld.so.conf,
// as files named pjrt_c_api_<name>_plugin.so, pjrt-plugin-<name>.so or pjrt_plugin_<name>.so.
func newXLABackend(name string) (compute.Backend, string, error) {
	os.Setenv("GOMLX_NO_AUTO_INSTALL", "1")
	xla.EnableAutoInstall(false)
	if p := os.Getenv(PJRTPluginEnv); p != "" {
		// A plugin file by its own path (bench/gpu.sh: JAX's xla_cuda_plugin.so where pip put it), so that
		// its RPATH ($ORIGIN/../../nvidia) finds the NVIDIA libraries beside it without links.
		if st, err := os.Stat(p); err != nil || !st.Mode().IsRegular() || !filepath.IsAbs(p) {
			return nil, "", fmt.Errorf("backend %s: $%s=%q: must be the absolute path of a PJRT plugin file (%v)", name, PJRTPluginEnv, p, err)
		}
		be, err := xla.New(p + "," + xlaOptions())
		if err != nil {
			return nil, "", fmt.Errorf("backend %s: plugin %s: %w", name, p, err)
		}
		return be, "xla:cuda", nil
	}
	plugins := xla.GetAvailablePlugins()
	plugin := ""
	for _, p := range plugins {
		if strings.HasPrefix(p, "cuda") {
			plugin = p
			break
		}
	}
	if plugin == "" {
		return nil, "", fmt.Errorf("backend %s: no PJRT CUDA plugin found (found: %q); looked in $PJRT_PLUGIN_LIBRARY_PATH=%q, ~/.local/lib/go-xla, "+
			"/usr/local/lib/go-xla, LD_LIBRARY_PATH and ld.so.conf for pjrt_c_api_cuda_plugin.so, pjrt-plugin-cuda.so or pjrt_plugin_cuda.so. "+
			"Point PJRT_PLUGIN_LIBRARY_PATH at a folder holding one: from a JAX CUDA install, link jax_plugins/xla_cuda12/xla_cuda_plugin.so "+
			"as pjrt_c_api_cuda_plugin.so and keep the nvidia/ libraries at ../nvidia beside it (the plugin's RPATH)",
			name, plugins, os.Getenv("PJRT_PLUGIN_LIBRARY_PATH"))
	}
	cfg := plugin + "," + xlaOptions()
	be, err := xla.New(cfg)
	if err != nil {
		return nil, "", fmt.Errorf("backend %s: plugin %s (config %q; $%s adds to it): %w", name, plugin, cfg, XLAOptionsEnv, err)
	}
	if filepath.IsAbs(plugin) {
		plugin = "cuda"
	}
	return be, "xla:" + plugin, nil
}

// PJRTPluginEnv names a PJRT plugin file to use as it is (an absolute path), before any search.
const PJRTPluginEnv = "MIMLAB_PJRT_PLUGIN"

// XLAOptionsEnv appends go-xla backend options (tf32, preallocate, memory_fraction, allocator, ...).
const XLAOptionsEnv = "MIMLAB_XLA_OPTIONS"

// xlaOptions are go-xla's options for mimlab: TF32 off, which go-xla turns on by default on CUDA. float32
// means float32 here, as in PyTorch (torch.backends.cuda.matmul.allow_tf32 is False by default): the step
// parity tests hold float32 products to 1e-4, which TF32's 10-bit mantissa misses, and bf16 is what
// train.precision offers for speed. $MIMLAB_XLA_OPTIONS=tf32=true measures TF32 anyway (later keys win).
func xlaOptions() string {
	o := "tf32=false"
	if extra := strings.TrimSpace(os.Getenv(XLAOptionsEnv)); extra != "" {
		o += "," + extra
	}
	return o
}
