package decoder

import "mimlab/framework/registry"

// NoneConfig is [decoder] for name = "none": no decoder, for methods that predict nothing through one
// (contrastive and supervised methods, or any method that declares [decoder] unused). It decodes nothing
// (neither Latent nor Full), so a method that needs a decoder refuses it with the names that would do.
type NoneConfig struct {
	Name string `toml:"name"`
}

// Validate checks the section.
func (c *NoneConfig) Validate() error { return nil }

func init() {
	Registry.Register(registry.Entry[Decoder]{
		Name: "none", Doc: "no decoder (methods that decode nothing)",
		NewConfig: func() registry.Config { return &NoneConfig{Name: "none"} },
		Build:     func(registry.Config) (Decoder, error) { return None{}, nil },
	})
}

// None is the absent decoder.
type None struct{}

// Name implements Decoder.
func (None) Name() string { return "none" }
