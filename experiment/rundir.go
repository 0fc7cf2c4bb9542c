package experiment

import (
	"fmt"
	"os"
	"path/filepath"

	"mimlab/framework/store"
)

// runDir is a trial's folder in the runs folder, RUNS/<hash>, for a hash already checked by
// store.ValidHash. The folder may be a link that Reidentify made from a new identity to the old one; such a
// link must name a sibling by its hash. Anything else (a link to ../victim, left by a damaged or hostile
// database, or an absolute path) is refused, so nothing a trial writes lands outside the runs folder.
func runDir(runs, hash string) (string, error) {
	dir := filepath.Join(runs, hash)
	fi, err := os.Lstat(dir)
	if err != nil || fi.Mode()&os.ModeSymlink == 0 {
		return dir, nil
	}
	target, err := os.Readlink(dir)
	if err != nil {
		return "", fmt.Errorf("trial folder %s: %w", dir, err)
	}
	if !store.ValidHash(target) {
		return "", fmt.Errorf("trial folder %s is a link to %q, not to another trial's folder beside it: remove the link (nothing is written through it)", dir, target)
	}
	return dir, nil
}
