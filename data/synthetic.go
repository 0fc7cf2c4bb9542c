package data

import (
	"math"
	"math/rand/v2"
)

var shapeKinds = []string{"square", "disc", "cross", "triangle", "ring", "bar"}

// loadSynthetic draws shapes (class = shape kind) at random positions and scales with a little noise,
// seeded by subset_seed, so tests get a labelled image set in milliseconds.
func loadSynthetic(c *Config) (*Dataset, error) {
	ch := c.Channels
	if ch == 0 {
		ch = 1
	}
	d := &Dataset{Name: "synthetic", Channels: ch, Size: c.ImageSize, Classes: c.Classes, ClassNames: shapeKinds[:c.Classes]}
	d.Train = drawShapes(c.NumTrain, c.Classes, ch, c.ImageSize, rand.New(rand.NewPCG(c.SubsetSeed, 1)))
	d.Test = drawShapes(c.NumTest, c.Classes, ch, c.ImageSize, rand.New(rand.NewPCG(c.SubsetSeed, 2)))
	d.applyLimits(&Config{TrainLimit: c.TrainLimit, TestLimit: c.TestLimit, SubsetSeed: c.SubsetSeed})
	return d, nil
}

func drawShapes(n, classes, ch, size int, r *rand.Rand) Split {
	s := Split{Images: make([]float32, n*ch*size*size), Labels: make([]int, n), N: n}
	for i := 0; i < n; i++ {
		label := i % classes
		s.Labels[i] = label
		img := s.Images[i*ch*size*size : (i+1)*ch*size*size]
		rad := float64(size) * (0.15 + 0.2*r.Float64())
		cx := rad + r.Float64()*(float64(size)-2*rad)
		cy := rad + r.Float64()*(float64(size)-2*rad)
		color := make([]float32, ch)
		for k := range color {
			color[k] = 0.6 + 0.4*r.Float32()
		}
		for y := 0; y < size; y++ {
			for x := 0; x < size; x++ {
				dx, dy := (float64(x)+0.5-cx)/rad, (float64(y)+0.5-cy)/rad
				if inShape(shapeKinds[label], dx, dy) {
					for k := 0; k < ch; k++ {
						img[(k*size+y)*size+x] = color[k]
					}
				}
			}
		}
		for j := range img {
			v := img[j] + 0.05*float32(r.NormFloat64())
			img[j] = float32(math.Min(1, math.Max(0, float64(v))))
		}
	}
	return s
}

func inShape(kind string, dx, dy float64) bool {
	ax, ay := math.Abs(dx), math.Abs(dy)
	switch kind {
	case "square":
		return ax <= 0.8 && ay <= 0.8
	case "disc":
		return dx*dx+dy*dy <= 1
	case "cross":
		return (ax <= 0.25 && ay <= 1) || (ay <= 0.25 && ax <= 1)
	case "triangle":
		return dy <= 0.9 && dy >= -0.9 && ax <= (dy+0.9)/1.8
	case "ring":
		r2 := dx*dx + dy*dy
		return r2 <= 1 && r2 >= 0.4
	case "bar":
		return ax <= 1 && ay <= 0.3
	}
	return false
}
