package report

import (
	"image/color"
	"math"
	"strings"

	"gonum.org/v1/plot"
	"gonum.org/v1/plot/plotter"
	"gonum.org/v1/plot/vg"
	"gonum.org/v1/plot/vg/draw"
)

type curve struct {
	name         string
	x, mean, std []float64
	dashed       bool // a reference line
}

type barGroup struct {
	name string
	vals []stats // one per category
}

// lineChart plots curves (mean line and a ±std band) to a PNG.
func lineChart(path, title, xl, yl string, cs []curve) error {
	p := plot.New()
	p.Title.Text = title
	p.X.Label.Text, p.Y.Label.Text = xl, yl
	p.Legend.Top = true
	for i, c := range cs {
		col := colorOf(i)
		if hasSpread(c.std) {
			var poly plotter.XYs
			for j := range c.x {
				poly = append(poly, plotter.XY{X: c.x[j], Y: c.mean[j] + c.std[j]})
			}
			for j := len(c.x) - 1; j >= 0; j-- {
				poly = append(poly, plotter.XY{X: c.x[j], Y: c.mean[j] - c.std[j]})
			}
			if band, err := plotter.NewPolygon(poly); err == nil {
				r, g, b, _ := col.RGBA()
				band.Color = color.NRGBA{uint8(r >> 8), uint8(g >> 8), uint8(b >> 8), 50} // NRGBA: RGBA is alpha-premultiplied, and drew the band opaque
				band.LineStyle.Width = 0
				p.Add(band)
			}
		}
		pts := make(plotter.XYs, len(c.x))
		for j := range c.x {
			pts[j] = plotter.XY{X: c.x[j], Y: c.mean[j]}
		}
		l, err := plotter.NewLine(pts)
		if err != nil {
			return err
		}
		l.Color = col
		l.Width = vg.Points(1.5)
		if c.dashed {
			l.Color = color.Gray{Y: uint8(60 + 60*(i%3))}
			l.Dashes = []vg.Length{vg.Points(5), vg.Points(3)}
		}
		p.Add(l)
		p.Legend.Add(c.name, l)
	}
	legendHeadroom(p, cs)
	return p.Save(7*vg.Inch, 4*vg.Inch, path)
}

// legendHeadroom raises the y axis's top so that the legend (top right, one row per curve) sits above the
// data instead of over it: without it a reference line's legend entry was drawn across the curves, looking
// like a line at that height.
func legendHeadroom(p *plot.Plot, cs []curve) {
	lo, hi := math.Inf(1), math.Inf(-1)
	for _, c := range cs {
		for j := range c.x {
			sd := 0.0
			if j < len(c.std) {
				sd = c.std[j]
			}
			lo, hi = math.Min(lo, c.mean[j]-sd), math.Max(hi, c.mean[j]+sd)
		}
	}
	if math.IsInf(lo, 0) || math.IsNaN(lo) || math.IsNaN(hi) {
		return
	}
	span := hi - lo
	if span <= 0 {
		span = math.Max(math.Abs(hi), 1) * 0.1
	}
	// A legend row takes about 1/18 of the 4-inch plot's data area; leave that much per row, plus a margin.
	frac := math.Min(0.6, (float64(len(cs))+0.5)/18)
	p.Y.Min = lo - 0.03*span
	p.Y.Max = hi + span*frac/(1-frac)
}

func hasSpread(s []float64) bool {
	for _, v := range s {
		if v > 0 {
			return true
		}
	}
	return false
}

// barChart draws grouped bars: one group per category (protocol), one bar per group entry (configuration
// or reference row), with ±std error bars.
func barChart(path, title string, categories []string, groups []barGroup) error {
	p := plot.New()
	p.Title.Text = title
	p.Y.Label.Text = "top-1"
	p.Y.Min, p.Y.Max = 0, 1+0.07*float64(len(groups)) // headroom above 1 for the legend
	p.Y.Tick.Marker = plot.ConstantTicks([]plot.Tick{{Value: 0, Label: "0"}, {Value: 0.25, Label: "0.25"}, {Value: 0.5, Label: "0.5"}, {Value: 0.75, Label: "0.75"}, {Value: 1, Label: "1"}})
	w := vg.Points(math.Max(4, 60/float64(len(groups)+1)))
	for i, g := range groups {
		vals := make(plotter.Values, len(categories))
		errs := make(plotter.YErrors, len(categories))
		xys := make(plotter.XYs, len(categories))
		for j := range categories {
			if j < len(g.vals) {
				vals[j] = g.vals[j].Mean
				errs[j] = struct{ Low, High float64 }{g.vals[j].Std, g.vals[j].Std}
			}
			xys[j] = plotter.XY{X: float64(j), Y: vals[j]}
		}
		b, err := plotter.NewBarChart(vals, w)
		if err != nil {
			return err
		}
		b.Color = colorOf(i)
		b.LineStyle.Width = 0
		off := (float64(i) - float64(len(groups)-1)/2) * float64(w)
		b.Offset = vg.Length(off)
		p.Add(b)
		p.Legend.Add(shorten(legendLabel(g.name)), b)
		eb := &errBars{xys: xys, errs: errs, off: vg.Length(off)}
		p.Add(eb)
	}
	p.NominalX(categories...)
	p.X.Min, p.X.Max = -0.5, float64(len(categories))-0.5 // the outer groups' bars stay inside the plot
	p.Legend.Top = true
	p.Legend.Left = false
	return p.Save(10*vg.Inch, 5*vg.Inch, path)
}

// legendLabel compacts a configuration label for a legend: "decoder.name=transformer,method.align_weight=2"
// becomes "transformer, align_weight=2" (component names by value, other keys without their section).
func legendLabel(s string) string {
	parts := strings.Split(s, ",")
	for i, kv := range parts {
		k, v, ok := strings.Cut(kv, "=")
		if !ok {
			return s
		}
		if strings.HasSuffix(k, ".name") {
			parts[i] = v
		} else if _, short, ok := strings.Cut(k, "."); ok {
			parts[i] = short + "=" + v
		}
	}
	return strings.Join(parts, ", ")
}

func shorten(s string) string {
	if len(s) > 70 {
		return s[:67] + "..."
	}
	return s
}

// errBars draws vertical error bars at bar positions shifted by off.
type errBars struct {
	xys  plotter.XYs
	errs plotter.YErrors
	off  vg.Length
}

func (e *errBars) Plot(c draw.Canvas, p *plot.Plot) {
	tx, ty := p.Transforms(&c)
	for i, xy := range e.xys {
		lo, hi := e.errs[i].Low, e.errs[i].High
		if lo == 0 && hi == 0 {
			continue
		}
		x := tx(xy.X) + e.off
		c.StrokeLine2(draw.LineStyle{Color: color.Black, Width: vg.Points(1)}, x, ty(xy.Y-lo), x, ty(xy.Y+hi))
		c.StrokeLine2(draw.LineStyle{Color: color.Black, Width: vg.Points(1)}, x-2, ty(xy.Y+hi), x+2, ty(xy.Y+hi))
		c.StrokeLine2(draw.LineStyle{Color: color.Black, Width: vg.Points(1)}, x-2, ty(xy.Y-lo), x+2, ty(xy.Y-lo))
	}
}

// scatter draws a 2-D embedding coloured by label.
func scatter(path, title string, y []float64, labels []int, names []string) error {
	p := plot.New()
	p.Title.Text = title
	p.HideAxes()
	by := map[int]plotter.XYs{}
	for i, l := range labels {
		by[l] = append(by[l], plotter.XY{X: y[2*i], Y: y[2*i+1]})
	}
	for l := 0; l < len(names); l++ {
		pts, ok := by[l]
		if !ok {
			continue
		}
		s, err := plotter.NewScatter(pts)
		if err != nil {
			return err
		}
		s.GlyphStyle.Color = palette(l)
		s.GlyphStyle.Radius = vg.Points(1.5)
		s.GlyphStyle.Shape = draw.CircleGlyph{}
		p.Add(s)
		p.Legend.Add(names[l], s)
	}
	p.Legend.Top = true
	return p.Save(5*vg.Inch, 5*vg.Inch, path)
}

var tab10 = []color.RGBA{{31, 119, 180, 255}, {255, 127, 14, 255}, {44, 160, 44, 255}, {214, 39, 40, 255}, {148, 103, 189, 255},
	{140, 86, 75, 255}, {227, 119, 194, 255}, {127, 127, 127, 255}, {188, 189, 34, 255}, {23, 190, 207, 255}}

func palette(i int) color.Color { return tab10[i%len(tab10)] }

// tab20 is Tableau's 20 colours (strong and light pairs), so that up to 20 configurations and reference
// rows in one chart get distinct colours (plotutil's default has 7, and a report of 8 configurations with 2
// reference rows showed repeated colours).
var tab20 = []color.NRGBA{
	{31, 119, 180, 255}, {255, 127, 14, 255}, {44, 160, 44, 255}, {214, 39, 40, 255}, {148, 103, 189, 255},
	{140, 86, 75, 255}, {227, 119, 194, 255}, {127, 127, 127, 255}, {188, 189, 34, 255}, {23, 190, 207, 255},
	{174, 199, 232, 255}, {255, 187, 120, 255}, {152, 223, 138, 255}, {255, 152, 150, 255}, {197, 176, 213, 255},
	{196, 156, 148, 255}, {247, 182, 210, 255}, {199, 199, 199, 255}, {219, 219, 141, 255}, {158, 218, 229, 255},
}

func colorOf(i int) color.Color { return tab20[i%len(tab20)] }
