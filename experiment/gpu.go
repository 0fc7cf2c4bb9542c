package experiment

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"strings"
	"sync"
	"time"
)

// GPU provenance (issue 34): a trial that runs on a GPU backend records the card it ran on in trials.gpu and
// attempts.gpu (and `sweep status` prints it); a trial on a CPU backend records "none", as before.

// gpuCard is the card of this process's GPU trials, asked of nvidia-smi once.
var gpuCard = sync.OnceValue(func() string {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	out, err := exec.CommandContext(ctx, "nvidia-smi", "--query-gpu=index,name,memory.total,driver_version", "--format=csv,noheader").Output()
	if err != nil {
		return fmt.Sprintf("unknown (nvidia-smi: %v)", err)
	}
	return parseNvidiaSMI(string(out), os.Getenv("CUDA_VISIBLE_DEVICES"))
})

// gpuOf is the GPU provenance of a trial on the resolved backend name: "none" off the GPU.
func gpuOf(backend string) string {
	if !gpuBackend(strings.SplitN(backend, ":", 2)[0]) {
		return "none"
	}
	return gpuCard()
}

// parseNvidiaSMI turns nvidia-smi's "index, name, memory.total, driver_version" CSV lines into the card a
// process uses: the first of CUDA_VISIBLE_DEVICES when that names an index (XLA's device 0), else the first
// card; "NVIDIA H200 (143771 MiB, driver 580.82.07)", with "1 of 8" when the machine has more.
func parseNvidiaSMI(out, visible string) string {
	var rows [][]string
	for _, l := range strings.Split(strings.TrimSpace(out), "\n") {
		f := strings.Split(l, ",")
		if len(f) != 4 {
			continue
		}
		for i := range f {
			f[i] = strings.TrimSpace(f[i])
		}
		rows = append(rows, f)
	}
	if len(rows) == 0 {
		return fmt.Sprintf("unknown (nvidia-smi printed %q)", strings.TrimSpace(out))
	}
	pick := rows[0]
	if v := strings.TrimSpace(strings.Split(visible, ",")[0]); v != "" {
		for _, r := range rows {
			if r[0] == v {
				pick = r
			}
		}
	}
	card := fmt.Sprintf("%s (%s, driver %s)", pick[1], pick[2], pick[3])
	if len(rows) > 1 {
		card += fmt.Sprintf(", card %s of %d", pick[0], len(rows))
	}
	return card
}
