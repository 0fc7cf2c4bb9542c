package experiment

import (
	"fmt"
	"sort"
	"strings"

	"mimlab/framework/spec"
)

// ResolveStored rebuilds a resolved spec from the JSON stored with a trial (spec.Resolved.Full), so that
// workers, `sweep export` and `report` work from the database alone, without the spec files. It reads both
// the current form (TOML keys) and the form written before identities moved to TOML-key space (Go field
// names, every field of a kind's shared config), which it converts.
func ResolveStored(js string) (*spec.Resolved, error) {
	tree, err := spec.FromJSON(js)
	if err != nil {
		return nil, fmt.Errorf("stored spec: %w", err)
	}
	if isLegacy(tree) {
		if tree, err = fromLegacy(tree); err != nil {
			return nil, fmt.Errorf("stored spec (legacy form): %w", err)
		}
	} else if err := dropRetired(tree); err != nil {
		return nil, fmt.Errorf("stored spec: %w", err)
	}
	res, err := spec.ResolveTree("stored spec", tree, Sections())
	if err != nil {
		return nil, fmt.Errorf("stored spec: %w", err)
	}
	return res, nil
}

// dropRetired removes from a stored spec the keys today's chosen implementation does not have (a spec
// stored by an older mimlab, before a key moved to another implementation or was retired): they cannot
// change what today's code runs, and the trial is re-identified without them.
func dropRetired(tree map[string]any) error {
	for _, s := range Sections() {
		sec, ok := tree[s.Name()].(map[string]any)
		if !ok {
			continue
		}
		impl, _ := sec["name"].(string)
		cfg, err := s.New(impl)
		if err != nil {
			return err
		}
		own := map[string]bool{}
		for _, k := range spec.Keys(cfg) {
			own[k.Key] = true
		}
		for k := range sec {
			if !own[k] {
				delete(sec, k)
			}
		}
	}
	return nil
}

// legacyKeys maps the Go field names of the configs as of commit 8b2b77b (the JSON that commit stored with
// each trial) to their TOML keys. It is frozen: it describes what old databases hold, not today's structs.
var legacyKeys = map[string]string{
	"Name": "name", "ImageSize": "image_size", "PatchSize": "patch_size", "Channels": "channels", "BatchSize": "batch_size",
	"TrainLimit": "train_limit", "TestLimit": "test_limit", "Augment": "augment", "CropScale": "crop_scale",
	"Normalize": "normalize", "Root": "root", "TestFraction": "test_fraction", "SubsetSeed": "subset_seed",
	"NumTrain": "num_train", "NumTest": "num_test", "Classes": "classes",
	"NumMasked": "num_masked", "MinBlock": "min_block", "MinAspect": "min_aspect", "MaxAspect": "max_aspect",
	"Vocab": "vocab", "Hidden": "hidden", "CodeDim": "code_dim", "Steps": "steps", "LR": "lr", "Beta": "beta",
	"Seed": "seed", "Weights": "weights",
	"Dim": "dim", "Depth": "depth", "Heads": "heads", "MLPRatio": "mlp_ratio", "LayerScale": "layer_scale", "DropPath": "drop_path",
	"AlignWeight": "align_weight",
	"Epochs":      "epochs", "MinLR": "min_lr", "WeightDecay": "weight_decay", "WarmupSteps": "warmup_steps", "Clip": "clip",
	"Beta1": "beta1", "Beta2": "beta2", "CheckpointEvery": "checkpoint_every", "LogEvery": "log_every",
	"Backend": "backend", "Device": "device",
	"Protocols": "protocols", "Feature": "feature", "Batch": "batch", "LinearL2": "linear_l2", "LinearMaxIter": "linear_max_iter",
	"KNNK": "knn_k", "KNNTemperature": "knn_temperature", "AttEpochs": "attentive_epochs", "AttLR": "attentive_lr",
	"AttBatch": "attentive_batch", "AttOptimizer": "attentive_optimizer", "AttWD": "attentive_weight_decay", "Baselines": "baselines",
}

// isLegacy says whether a stored spec uses Go field names (its train section has "Steps", not "steps").
func isLegacy(tree map[string]any) bool {
	tr, _ := tree["train"].(map[string]any)
	_, ok := tr["Steps"]
	return ok
}

// fromLegacy renames the keys and keeps, for each section, only the keys of the implementation it names
// (the old shared configs carried every implementation's fields, unused ones at zero).
func fromLegacy(tree map[string]any) (map[string]any, error) {
	out := map[string]any{"name": tree["name"]}
	for _, s := range Sections() {
		old, ok := tree[s.Name()].(map[string]any)
		if !ok {
			return nil, fmt.Errorf("section %s missing", s.Name())
		}
		sec := map[string]any{}
		var unknown []string
		for goName, v := range old {
			key, ok := legacyKeys[goName]
			if !ok {
				unknown = append(unknown, goName)
				continue
			}
			if v == nil {
				continue
			}
			sec[key] = v
		}
		if len(unknown) > 0 {
			sort.Strings(unknown)
			return nil, fmt.Errorf("section %s: unknown fields %s", s.Name(), strings.Join(unknown, ", "))
		}
		out[s.Name()] = sec
	}
	return out, dropRetired(out)
}
