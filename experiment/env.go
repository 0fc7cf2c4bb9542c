package experiment

import (
	"encoding/json"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"runtime/debug"
	"strings"
	"sync"
	"time"

	"github.com/gomlx/compute"
	"mimlab/data"
	"mimlab/framework/progress"
	"mimlab/framework/spec"
	"mimlab/framework/store"
)

// Env is what the trials of one process share: the backend, loaded datasets, the resolved specs of the
// sweeps it expanded, where files go and where progress is printed.
type Env struct {
	Backend     compute.Backend
	BackendName string
	RunsDir     string // per-trial checkpoints and exports: RunsDir/<hash>/
	CacheDir    string // tokenizers
	Log         io.Writer
	// Progress, when set, shows training steps (live lines on a terminal); else they are printed to Log.
	Progress *progress.Display

	mu       sync.Mutex
	datasets map[string]*data.Dataset
	specs    map[string]*spec.Resolved
	refLocks map[string]*sync.Mutex // one per reference-row key: trials of one process compute a reference once
	names    map[int64]string       // trial ID -> short display name (framework/labels), for logs and live lines

	// head is the working directory's git commit when the process started (RecordStartHead): the provenance
	// of a binary without a VCS stamp (go run, GOFLAGS=-buildvcs=false). Taken once, so that commits made
	// while a long sweep runs are not attributed to its later trials.
	head workTree
}

// workTree is a git working tree's HEAD and whether tracked files differ from it.
type workTree struct {
	rev   string
	dirty bool
}

// startHead is the working tree's HEAD and status as the process first asked for it (RecordStartHead).
var startHead = sync.OnceValue(headOf)

// RecordStartHead takes the working tree's HEAD and status now, once per process: a command calls it when
// it starts (cmd/sweep's main), so that every Env made later, possibly hours later for the last spec of a
// `sweep run a.toml b.toml`, records the commit the process was started at.
func RecordStartHead() { startHead() }

// headOf reads the git HEAD and status of the current directory ("" outside a repository).
func headOf() workTree {
	out, err := exec.Command("git", "rev-parse", "HEAD").Output()
	if err != nil {
		return workTree{}
	}
	w := workTree{rev: strings.TrimSpace(string(out))}
	if st, err := exec.Command("git", "status", "--porcelain", "--untracked-files=no").Output(); err == nil {
		w.dirty = len(strings.TrimSpace(string(st))) > 0
	}
	return w
}

// NameTrials gives the trials of a sweep the short names the status and the report use ("cae pixel
// seed=3" rather than every swept key), for the training log and the live progress lines.
func (e *Env) NameTrials(ts []store.Trial) {
	tss := make([]TrialStatus, len(ts))
	for i, t := range ts {
		tss[i].Trial = t
	}
	shortNames(tss)
	e.mu.Lock()
	defer e.mu.Unlock()
	if e.names == nil {
		e.names = map[int64]string{}
	}
	for _, t := range tss {
		if n := strings.TrimSpace(t.Short); n != "" {
			e.names[t.ID] = n
		}
	}
}

// displayName is a trial's short name when NameTrials gave it one, else its full name.
func (e *Env) displayName(t *store.Trial) string {
	e.mu.Lock()
	defer e.mu.Unlock()
	if n, ok := e.names[t.ID]; ok {
		return n
	}
	return t.Name
}

// NewEnv makes an environment.
func NewEnv(be compute.Backend, backendName, runsDir string, log io.Writer) *Env {
	e := &Env{Backend: be, BackendName: backendName, RunsDir: runsDir, CacheDir: filepath.Join(runsDir, "cache"), Log: log,
		datasets: map[string]*data.Dataset{}, specs: map[string]*spec.Resolved{}}
	if _, _, stamped := vcsOf(debug.ReadBuildInfo()); !stamped {
		e.head = startHead()
	}
	return e
}

// AddSpec makes a resolved trial known to the environment (the runner gives jobs only the trial row).
func (e *Env) AddSpec(hash string, res *spec.Resolved) {
	e.mu.Lock()
	e.specs[hash] = res
	e.mu.Unlock()
}

// lockReference serialises the computation of one reference row (raw pixels, random-init ViT) among the
// trials this process runs at once: under -j N they share a dataset and model, and each used to compute the
// same references at the same time (the quickstart's two trials both did). The second waits, then finds
// them stored. It returns the unlock.
func (e *Env) lockReference(key string) func() {
	l := e.referenceMutex(key)
	l.Lock()
	return l.Unlock
}

// waitReference is lockReference for a trial that found the row busy: the wait can take as long as the
// other trial's computation (a fine-tuning reference trains a ViT from scratch), so it calls alive every 10
// s meanwhile and the watchdog does not take the waiting trial for a stuck one.
func (e *Env) waitReference(key string, alive func()) func() {
	waiting := make(chan struct{})
	go func() {
		tk := time.NewTicker(10 * time.Second)
		defer tk.Stop()
		for {
			select {
			case <-waiting:
				return
			case <-tk.C:
				alive()
			}
		}
	}()
	unlock := e.lockReference(key)
	close(waiting)
	return unlock
}

// tryLockReference is lockReference without waiting: ok is false when another trial holds the row, which
// can then compute another row meanwhile.
func (e *Env) tryLockReference(key string) (unlock func(), ok bool) {
	l := e.referenceMutex(key)
	if !l.TryLock() {
		return nil, false
	}
	return l.Unlock, true
}

func (e *Env) referenceMutex(key string) *sync.Mutex {
	e.mu.Lock()
	defer e.mu.Unlock()
	if e.refLocks == nil {
		e.refLocks = map[string]*sync.Mutex{}
	}
	l, ok := e.refLocks[key]
	if !ok {
		l = &sync.Mutex{}
		e.refLocks[key] = l
	}
	return l
}

func (e *Env) spec(hash string) (*spec.Resolved, error) {
	e.mu.Lock()
	defer e.mu.Unlock()
	r, ok := e.specs[hash]
	if !ok {
		return nil, fmt.Errorf("trial %s was not expanded by this process (run its spec file)", hash)
	}
	return r, nil
}

// DataKey is the canonical description of a data config (what makes two datasets the same).
func DataKey(c *data.Config) string {
	k := *c
	k.BatchSize = 0 // the batch does not change the images
	b, _ := json.Marshal(k)
	return string(b)
}

// Dataset loads (once per process) the dataset a data config describes.
func (e *Env) Dataset(c *data.Config) (*data.Dataset, error) {
	key := DataKey(c)
	e.mu.Lock()
	defer e.mu.Unlock()
	if d, ok := e.datasets[key]; ok {
		return d, nil
	}
	d, err := data.Load(c)
	if err != nil {
		return nil, err
	}
	// Loading leaves the decoded files and the pre-resize images as garbage (140 MB at 56x56), which Go's
	// heap would otherwise keep from the OS for the whole run (BENCHMARKS.md, issue 18).
	debug.FreeOSMemory()
	e.datasets[key] = d
	return d, nil
}

// Provenance describes this process for the trials table.
func (e *Env) Provenance() store.Provenance {
	p := store.Provenance{GoVersion: runtime.Version(), Backend: e.BackendName, GPU: gpuOf(e.BackendName)} // gpu.go
	bi, haveBI := debug.ReadBuildInfo()
	if rev, dirty, ok := vcsOf(bi, haveBI); ok {
		// The commit the binary was built from: the working tree may have moved on since (a long sweep
		// from a built binary while the code is edited).
		p.GitCommit, p.GitDirty = rev, dirty
	} else { // go run, -buildvcs=false: the working tree as it was when this process started
		p.GitCommit, p.GitDirty = e.head.rev, e.head.dirty
	}
	if haveBI {
		var mods []string
		for _, m := range bi.Deps {
			if strings.Contains(m.Path, "gomlx") || strings.Contains(m.Path, "sqlite") || strings.Contains(m.Path, "gonum") {
				mods = append(mods, m.Path+"@"+m.Version)
			}
		}
		p.Modules = strings.Join(mods, " ")
	}
	p.Host, _ = os.Hostname()
	if b, err := os.ReadFile("/proc/cpuinfo"); err == nil {
		for _, l := range strings.Split(string(b), "\n") {
			if strings.HasPrefix(l, "model name") {
				p.CPU = fmt.Sprintf("%s x%d", strings.TrimSpace(strings.SplitN(l, ":", 2)[1]), runtime.NumCPU())
				break
			}
		}
	}
	return p
}

// vcsOf reads the revision and modified flag that `go build` stamps into a binary built in a git checkout.
func vcsOf(bi *debug.BuildInfo, ok bool) (rev string, dirty, found bool) {
	if !ok || bi == nil {
		return "", false, false
	}
	for _, s := range bi.Settings {
		switch s.Key {
		case "vcs.revision":
			rev = s.Value
		case "vcs.modified":
			dirty = s.Value == "true"
		}
	}
	return rev, dirty, rev != ""
}
