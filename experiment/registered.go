package experiment

import (
	"sort"

	"mimlab/framework/spec"
)

// Component is one registered implementation as `sweep list` shows it.
type Component struct {
	Kind, Name, Doc string
	Default         bool
	Keys            []spec.KeyInfo
}

// Registered lists every registered component by kind (spec order), then the fixed sections.
func Registered() []Component {
	var out []Component
	for _, k := range Kinds() {
		names := k.Names()
		sort.Strings(names)
		for _, n := range names {
			cfg, err := k.New(n)
			if err != nil {
				continue
			}
			var keys []spec.KeyInfo
			for _, ki := range spec.Keys(cfg) {
				if ki.Key != "name" {
					keys = append(keys, ki)
				}
			}
			out = append(out, Component{Kind: k.Name(), Name: n, Doc: k.Doc(n), Default: n == k.Default(), Keys: keys})
		}
	}
	for _, s := range Fixed() {
		cfg, _ := s.New("")
		out = append(out, Component{Kind: s.Name(), Keys: spec.Keys(cfg)})
	}
	return out
}
