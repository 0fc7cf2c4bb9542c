package experiment

import (
	"encoding/json"
	"fmt"

	"mimlab/framework/registry"
	"mimlab/framework/spec"
)

// ResolveStored rebuilds a resolved spec from the JSON stored with a trial (spec.Resolved.Full), so that
// `sweep export` and `report` work from the database alone, without the spec files.
func ResolveStored(js string) (*spec.Resolved, error) {
	var m map[string]json.RawMessage
	if err := json.Unmarshal([]byte(js), &m); err != nil {
		return nil, fmt.Errorf("stored spec: %w", err)
	}
	res := &spec.Resolved{Sections: map[string]registry.Config{}}
	json.Unmarshal(m["name"], &res.Name)
	for _, s := range Sections() {
		raw, ok := m[s.Name()]
		if !ok {
			return nil, fmt.Errorf("stored spec lacks section %s", s.Name())
		}
		var named struct{ Name string }
		json.Unmarshal(raw, &named)
		cfg, err := s.New(named.Name)
		if err != nil {
			return nil, fmt.Errorf("stored spec: %w", err)
		}
		if err := json.Unmarshal(raw, cfg); err != nil {
			return nil, fmt.Errorf("stored spec, section %s: %w", s.Name(), err)
		}
		res.Sections[s.Name()] = cfg
	}
	return res, nil
}
