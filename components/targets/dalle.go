package targets

import "fmt"

type dalleFactory struct{ c Config }

func (f dalleFactory) Prepare(env Env) (Target, error) {
	return nil, fmt.Errorf("targets.name = \"dalle\": not implemented yet in this build")
}
