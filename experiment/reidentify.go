package experiment

import (
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"

	"mimlab/framework/spec"
	"mimlab/framework/store"
)

// identityVersion names the current identity scheme (TOML-key space); with the registered keys and their
// defaults it makes the fingerprint that says whether stored identities are current.
const identityVersion = "toml-keys-1"

// IdentityFingerprint changes whenever a registered implementation, a key or a default changes: the events
// after which stored trials may have another identity under today's code.
func IdentityFingerprint() string {
	var b strings.Builder
	b.WriteString(identityVersion)
	for _, s := range Sections() {
		impls := s.Names()
		if len(impls) == 0 {
			impls = []string{""}
		}
		for _, impl := range impls {
			cfg, err := s.New(impl)
			if err != nil {
				continue
			}
			js, _ := json.Marshal(spec.Values(cfg, false))
			fmt.Fprintf(&b, "|%s/%s=%s", s.Name(), impl, js)
			if u, ok := cfg.(spec.Uses); ok { // sections it leaves out of its trials' identities
				fmt.Fprintf(&b, " unused=%s", strings.Join(u.Unused(), ","))
			}
		}
	}
	h := sha256.Sum256([]byte(b.String()))
	return hex.EncodeToString(h[:])[:16]
}

// Reidentify brings the stored trials' identities up to date: each stored spec is resolved with today's code
// (the legacy form of older databases converted) and rehashed; a trial whose hash changed moves to the new
// hash in one transaction, keeping the old one in legacy_hash, so its done state, metrics and evals are
// found under the identity today's specs expand to. Its runs folder gets a link under the new hash. It runs
// only when the registered keys changed since the last time (a fingerprint in the meta table).
func Reidentify(st *store.Store, runs string, log io.Writer) error {
	fp := IdentityFingerprint()
	if cur, err := st.Meta("identity"); err != nil {
		return fmt.Errorf("%s: reading the identity fingerprint: %w", st.Path, err)
	} else if cur == fp {
		return nil
	}
	trials, err := st.Trials("")
	if err != nil {
		return fmt.Errorf("%s: %w", st.Path, err)
	}
	taken := map[string]int64{}
	for _, t := range trials {
		taken[t.Hash] = t.ID
	}
	var moves []store.Reidentified
	for _, t := range trials {
		res, err := ResolveStored(t.Spec)
		if err != nil {
			fmt.Fprintf(log, "sweep: trial %d (%s) keeps its identity: %v\n", t.ID, t.Name, err)
			continue
		}
		h := res.Hash()
		if h == t.Hash {
			continue
		}
		if other, ok := taken[h]; ok && other != t.ID {
			// Old identities held every implementation's fields: two trials that differed only in a field
			// their implementation never read are one configuration today. The first keeps the new identity;
			// this one keeps its old hash (its results stay readable; today's specs do not expand to it).
			fmt.Fprintf(log, "sweep: trial %d (%s) is the same configuration as trial %d under today's keys; it keeps its old identity %s\n", t.ID, t.Name, other, t.Hash)
			continue
		}
		taken[h] = t.ID
		moves = append(moves, store.Reidentified{ID: t.ID, OldHash: t.Hash, NewHash: h, NewSpec: res.Full()})
	}
	if err := st.Reidentify(moves, "identity", fp); err != nil {
		return fmt.Errorf("%s: re-identifying trials: %w", st.Path, err)
	}
	if len(moves) > 0 {
		fmt.Fprintf(log, "sweep: %d trials of %s moved to today's identities (old hashes kept in trials.legacy_hash)\n", len(moves), st.Path)
	}
	for _, m := range moves {
		if !store.ValidHash(m.OldHash) || !store.ValidHash(m.NewHash) {
			// A path is built from validated parts only: a stored hash such as "../victim" links nothing.
			fmt.Fprintf(log, "sweep: trial %d: its stored identity %q is not 16 hex digits: its runs folder is not linked\n", m.ID, m.OldHash)
			continue
		}
		oldDir, newDir := filepath.Join(runs, m.OldHash), filepath.Join(runs, m.NewHash)
		if _, err := os.Stat(oldDir); err != nil {
			continue
		}
		if _, err := os.Lstat(newDir); err == nil {
			continue
		}
		if err := os.Symlink(m.OldHash, newDir); err != nil {
			fmt.Fprintf(log, "sweep: linking %s to %s: %v\n", newDir, oldDir, err)
		}
	}
	return nil
}
