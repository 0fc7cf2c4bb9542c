package experiment

import (
	"strings"
	"testing"
)

// The card a GPU trial records as its provenance (trials.gpu, attempts.gpu), from nvidia-smi's CSV.
func TestParseNvidiaSMI(t *testing.T) {
	one := "0, NVIDIA H200, 143771 MiB, 580.82.07\n"
	two := "0, NVIDIA H200, 143771 MiB, 580.82.07\n1, NVIDIA A100-SXM4-80GB, 81920 MiB, 580.82.07\n"
	cases := []struct {
		name, out, visible, want string
	}{
		{"one card", one, "", "NVIDIA H200 (143771 MiB, driver 580.82.07)"},
		{"first of two", two, "", "NVIDIA H200 (143771 MiB, driver 580.82.07), card 0 of 2"},
		{"CUDA_VISIBLE_DEVICES picks", two, "1,0", "NVIDIA A100-SXM4-80GB (81920 MiB, driver 580.82.07), card 1 of 2"},
		{"a UUID in CUDA_VISIBLE_DEVICES: the first card", two, "GPU-5d1c", "NVIDIA H200 (143771 MiB, driver 580.82.07), card 0 of 2"},
		{"no card", "No devices were found\n", "", `unknown (nvidia-smi printed "No devices were found")`},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			if got := parseNvidiaSMI(c.out, c.visible); got != c.want {
				t.Fatalf("parseNvidiaSMI = %q, want %q", got, c.want)
			}
		})
	}
}

// A trial off the GPU records "none"; one on the GPU asks nvidia-smi (here, a machine without one, says why).
func TestGPUProvenance(t *testing.T) {
	for _, be := range []string{"go", "ort", "auto"} {
		if got := gpuOf(be); got != "none" {
			t.Errorf("gpuOf(%q) = %q, want none", be, got)
		}
	}
	got := gpuOf("xla:cuda")
	if got == "none" || got == "" {
		t.Fatalf("gpuOf(xla:cuda) = %q: a GPU trial must name its card or say why it cannot", got)
	}
	if !strings.Contains(got, "(") {
		t.Errorf("gpuOf(xla:cuda) = %q: want the card with its memory, or unknown with nvidia-smi's reason", got)
	}
	t.Logf("this machine: %s", got)
}
