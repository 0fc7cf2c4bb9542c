package report

import (
	"strings"
	"testing"
)

// REPORT.md escapes names from the database as the HTML page does: a newline, NUL or '|' in a name cannot
// start a heading, a block or a table row of its own, and markup in it (a link, inline HTML) stays text.
func TestMarkdownEscapesNames(t *testing.T) {
	hostile := "cae\n# injected heading\x00|x| <script>alert(1)</script> [link](http://evil)"
	p := &page{title: "mimlab report", db: "results.db"}
	p.add(&section{title: hostile, text: "config " + hostile,
		tables: []table{{head: []string{"name", "top1"}, rows: [][]string{{hostile, "0.5"}, {"n<2", "0.4"}}}},
		images: []figure{{src: "figs/a.png", caption: hostile}}})
	md := p.markdown()
	for i, line := range strings.Split(md, "\n") {
		if strings.HasPrefix(line, "# injected") || strings.Contains(line, "\x00") {
			t.Errorf("line %d: %q: a name started a line of its own or kept a NUL", i+1, line)
		}
		if strings.HasPrefix(line, "| ") && strings.Count(strings.ReplaceAll(line, `\|`, ""), "|") != 3 {
			t.Errorf("line %d: %q: a name added table cells", i+1, line)
		}
		// (table cells keep '[' as is: trial names of older databases hold brackets, tiny[train.seed=1])
		if strings.Contains(strings.ReplaceAll(line, `\<`, ""), "<script>") || !strings.HasPrefix(line, "| ") && strings.Contains(strings.ReplaceAll(line, `\[`, ""), "[link]") {
			t.Errorf("line %d: %q: markup in a name was kept", i+1, line)
		}
	}
	if !strings.Contains(md, "| n<2 |") {
		t.Errorf("a '<' that opens no tag was escaped:\n%s", md)
	}
	if !strings.Contains(md, `cae # injected heading \|x\| \<script>alert(1)\</script> \[link\](http://evil)`) {
		t.Errorf("the name is not shown escaped:\n%s", md)
	}
}
