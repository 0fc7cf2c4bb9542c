package experiment

import (
	"encoding/json"

	"mimlab/framework/labels"
	"mimlab/framework/spec"
	"mimlab/framework/store"
)

// Config is a stored trial's configuration: its resolved spec without the seed and the execution-only
// keys (spec.Resolved.ConfigTree), what the seeds of one configuration share. Key is its canonical JSON:
// two trials pool as seeds, and a re-planned spec matches a stored trial, exactly when their Keys are equal.
type Config struct {
	Tree map[string]any
	Key  string
}

// StoredConfig is the configuration of a trial from its stored spec (any form ResolveStored reads). A spec
// that no longer resolves keeps its own text as the key, so that it pools with nothing but itself.
func StoredConfig(specJSON string) Config {
	res, err := ResolveStored(specJSON)
	if err != nil {
		tree, _ := spec.FromJSON(specJSON)
		return Config{Tree: tree, Key: specJSON}
	}
	tree := res.ConfigTree()
	b, err := json.Marshal(tree)
	if err != nil {
		return Config{Tree: tree, Key: specJSON}
	}
	return Config{Tree: tree, Key: string(b)}
}

// ConfigLabel is what labels.Short needs of a trial's configuration, keyed by key (its ConfigName, or a
// shorter name a report uses for it).
func ConfigLabel(t store.Trial, key string) labels.Config {
	return labels.Config{Key: key, Label: t.Label, Sweep: t.Base, Point: t.Point.Seedless().Strings()}
}

// ShortNames names the configurations of trials (any state) by their shortest unambiguous names
// (labels.Short), as status and the report show them: name(t) is the key of t's configuration.
func ShortNames(trials []store.Trial, name func(store.Trial) string) func(store.Trial) string {
	var lcs []labels.Config
	seen := map[string]bool{}
	for _, t := range trials {
		if k := name(t); !seen[k] {
			seen[k] = true
			lcs = append(lcs, ConfigLabel(t, k))
		}
	}
	short := labels.Short(lcs)
	return func(t store.Trial) string { return short[name(t)] }
}
