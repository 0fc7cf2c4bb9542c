package nn

import (
	"fmt"
	"math"
)

// Sched is a value that follows the training step: From at the first step, To after the last, along Shape.
// Methods schedule EMA momenta (I-JEPA's 0.996 -> 1), loss weights and the like with it; the Trainer feeds
// each scheduled value to the step graph as a scalar input, so one compiled graph serves every step.
type Sched struct {
	From, To float64
	Shape    string // "constant" (From throughout), "linear", "cosine" (half a cosine from From to To)
}

// SchedShapes are the allowed Shape values.
var SchedShapes = []string{"constant", "linear", "cosine"}

// Constant is a value that does not change.
func Constant(v float64) Sched { return Sched{From: v, To: v, Shape: "constant"} }

// At is the value at step (0-based: the step being taken) of total.
func (c Sched) At(step, total int) float64 {
	t := 0.0
	if total > 0 {
		t = math.Min(1, math.Max(0, float64(step)/float64(total)))
	}
	switch c.Shape {
	case "linear":
		return c.From + (c.To-c.From)*t
	case "cosine":
		return c.From + (c.To-c.From)*(1-math.Cos(math.Pi*t))/2
	default:
		return c.From
	}
}

// Validate checks the schedule; key names it in messages ("method.momentum"), lo and hi bound both ends.
func (c Sched) Validate(key string, lo, hi float64) error {
	ok := false
	for _, s := range SchedShapes {
		ok = ok || c.Shape == s
	}
	switch {
	case !ok:
		return fmt.Errorf("%s_schedule = %q: allowed values are constant, linear, cosine", key, c.Shape)
	case math.IsNaN(c.From) || c.From < lo || c.From > hi:
		return fmt.Errorf("%s = %v: must be in [%v, %v]", key, c.From, lo, hi)
	case c.Shape != "constant" && (math.IsNaN(c.To) || c.To < lo || c.To > hi):
		return fmt.Errorf("%s_end = %v: must be in [%v, %v]", key, c.To, lo, hi)
	}
	return nil
}

// String is "0.996" or "0.996 -> 1 (cosine)".
func (c Sched) String() string {
	if c.Shape == "constant" || c.Shape == "" || c.From == c.To {
		return fmt.Sprint(c.From)
	}
	return fmt.Sprintf("%v -> %v (%s)", c.From, c.To, c.Shape)
}
