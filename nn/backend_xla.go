//go:build xla

package nn

import (
	"fmt"
	"os"
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
	be, err := xla.New(plugin)
	if err != nil {
		return nil, "", fmt.Errorf("backend %s: plugin %s: %w", name, plugin, err)
	}
	return be, "xla:" + plugin, nil
}
