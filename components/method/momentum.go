package method

import "mimlab/nn"

// MomentumKeys are the keys of an EMA teacher's momentum, embedded in the config of every method that has
// one (their keys sit directly in [method]): the momentum at the first step, at the last, and the schedule
// between them.
type MomentumKeys struct {
	Momentum         float64 `toml:"momentum" doc:"the EMA teacher's momentum at the first step"`
	MomentumEnd      float64 `toml:"momentum_end" doc:"its momentum at the last step"`
	MomentumSchedule string  `toml:"momentum_schedule" allowed:"constant,linear,cosine" doc:"how the momentum goes from momentum to momentum_end"`
}

// Sched is the momentum's schedule.
func (k MomentumKeys) Sched() nn.Sched {
	return nn.Sched{From: k.Momentum, To: k.MomentumEnd, Shape: k.MomentumSchedule}
}

// Validate checks the keys (both ends in [0, 1], a known schedule), naming them.
func (k MomentumKeys) Validate() error { return k.Sched().Validate("method.momentum", 0, 1) }
