package report

import (
	"fmt"
	"html"
	"mimlab/framework/spec"
	"os"
	"strings"
	"time"
)

type figure struct{ src, caption string }

type table struct {
	head []string
	rows [][]string
}

type section struct {
	title, text string
	tables      []table
	images      []figure
	// grid shows images as rows of cells (for side-by-side model figures): rows of figures.
	grid [][]figure
}

type page struct {
	title, db string
	refresh   int // seconds; 0: a static page
	sections  []*section
}

func (p *page) add(s ...*section) { p.sections = append(p.sections, s...) }

func (p *page) write(path string) error {
	var b strings.Builder
	fmt.Fprintf(&b, "<!DOCTYPE html>\n<html><head><meta charset=\"utf-8\"><title>%s</title>\n", html.EscapeString(p.title))
	if p.refresh > 0 {
		fmt.Fprintf(&b, "<meta http-equiv=\"refresh\" content=\"%d\">\n", p.refresh)
	}
	b.WriteString(`<style>body{font-family:sans-serif;max-width:1200px;margin:2em auto;color:#222}
table{border-collapse:collapse;margin:1em 0}td,th{border:1px solid #bbb;padding:4px 8px;font-size:14px;text-align:left}
th{background:#eee}img{max-width:100%;border:1px solid #ddd}figure{display:inline-block;margin:6px;vertical-align:top}
figcaption{font-size:13px;color:#555;max-width:560px}</style></head><body>` + "\n")
	fmt.Fprintf(&b, "<h1>%s</h1>\n<p>From <code>%s</code>, %s.</p>\n", html.EscapeString(p.title), html.EscapeString(p.db), time.Now().Format("2006-01-02 15:04"))
	for _, s := range p.sections {
		fmt.Fprintf(&b, "<h2>%s</h2>\n<p>%s</p>\n", html.EscapeString(s.title), html.EscapeString(s.text))
		for _, t := range s.tables {
			b.WriteString("<table><tr>")
			for _, h := range t.head {
				fmt.Fprintf(&b, "<th>%s</th>", html.EscapeString(h))
			}
			b.WriteString("</tr>\n")
			for _, r := range t.rows {
				b.WriteString("<tr>")
				for _, c := range r {
					fmt.Fprintf(&b, "<td>%s</td>", html.EscapeString(c))
				}
				b.WriteString("</tr>\n")
			}
			b.WriteString("</table>\n")
		}
		for _, f := range s.images {
			fmt.Fprintf(&b, "<figure><img src=\"%s\" alt=\"%s\"><figcaption>%s</figcaption></figure>\n", html.EscapeString(f.src), html.EscapeString(f.caption), html.EscapeString(f.caption))
		}
		for _, row := range s.grid {
			b.WriteString("<div>")
			for _, f := range row {
				fmt.Fprintf(&b, "<figure><img src=\"%s\" alt=\"%s\"><figcaption>%s</figcaption></figure>", html.EscapeString(f.src), html.EscapeString(f.caption), html.EscapeString(f.caption))
			}
			b.WriteString("</div>\n")
		}
	}
	b.WriteString("</body></html>\n")
	return os.WriteFile(path, []byte(b.String()), 0o644)
}

// markdown renders the tables (and figure links) as Markdown.
func (p *page) markdown() string {
	var b strings.Builder
	fmt.Fprintf(&b, "# %s\n\nFrom %s.\n", mdText(p.title), mdText(p.db))
	for _, s := range p.sections {
		fmt.Fprintf(&b, "\n## %s\n\n%s\n", mdText(s.title), mdText(s.text))
		for _, t := range s.tables {
			t.markdown(&b)
		}
		for _, f := range s.images {
			fmt.Fprintf(&b, "\n![%s](<%s>)\n", mdText(f.caption), strings.NewReplacer("<", "%3C", ">", "%3E", "\n", "%0A").Replace(f.src))
		}
	}
	return b.String()
}

// markdown writes the table as Markdown, preceded by a blank line.
func (t table) markdown(b *strings.Builder) {
	b.WriteString("\n| " + strings.Join(mdCells(t.head), " | ") + " |\n|" + strings.Repeat(" --- |", len(t.head)) + "\n")
	for _, r := range t.rows {
		b.WriteString("| " + strings.Join(mdCells(r), " | ") + " |\n")
	}
}

// mdText escapes text (names from the database among it) for a Markdown heading, paragraph or caption, as
// the HTML page escapes it: control characters and line breaks become spaces (a name cannot start a heading
// or a block of its own), and the characters that would make markup of it (a link, inline HTML, code, a
// table, emphasis) are backslash-escaped.
func mdText(s string) string {
	var b strings.Builder
	for _, r := range s {
		switch {
		case spec.Hidden(r):
			b.WriteByte(' ')
		case strings.ContainsRune("\\`*[]|", r):
			b.WriteByte('\\')
			b.WriteRune(r)
		default:
			b.WriteRune(r)
		}
	}
	return escapeTags(b.String())
}

// escapeTags backslash-escapes each '<' that could open inline HTML (followed by a letter, '/', '!' or '?',
// as CommonMark's tags are), and leaves the others: "n<2" stays as the report has always written it.
func escapeTags(s string) string {
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		if s[i] == '<' && i+1 < len(s) && (s[i+1] >= 'a' && s[i+1] <= 'z' || s[i+1] >= 'A' && s[i+1] <= 'Z' || strings.IndexByte("/!?", s[i+1]) >= 0) {
			b.WriteByte('\\')
		}
		b.WriteByte(s[i])
	}
	return b.String()
}

// mdCells escapes what would break a Markdown table row: pipes, line breaks, other control characters, and
// the start of inline HTML (a name such as <script> from a hostile row).
func mdCells(cells []string) []string {
	out := make([]string, len(cells))
	for i, c := range cells {
		out[i] = strings.Map(func(r rune) rune {
			if spec.Hidden(r) {
				return ' '
			}
			return r
		}, escapeTags(strings.ReplaceAll(c, "|", "\\|")))
	}
	return out
}
