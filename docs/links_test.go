package docs

import (
	"bufio"
	"io/fs"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"
	"unicode"
)

// repoRoot is the repository's root as seen from this package's directory.
const repoRoot = ".."

// outside are path fragments that only exist beside a checkout, never in a
// clone: the design documents the project started from. Spelled in two
// parts so that this file does not match itself.
var outside = []string{".." + "/shared", "shared" + "/design"}

// repoFiles lists the files under the root whose names end in one of exts,
// skipping hidden directories (.git, .inferq) and build output.
func repoFiles(t *testing.T, exts ...string) []string {
	t.Helper()
	var out []string
	err := filepath.WalkDir(repoRoot, func(path string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if d.IsDir() {
			name := d.Name()
			if path != repoRoot && (strings.HasPrefix(name, ".") || name == "bin" || name == "node_modules" || name == "__pycache__") {
				return filepath.SkipDir
			}
			return nil
		}
		for _, e := range exts {
			if strings.HasSuffix(path, e) {
				out = append(out, path)
				break
			}
		}
		return nil
	})
	if err != nil {
		t.Fatalf("walk %s: %v", repoRoot, err)
	}
	return out
}

// TestLinksStayInRepo: a user has only the clone, so nothing a user reads
// (README.md, docs/, Go comments, the Python runner) may point outside it,
// and every relative Markdown link must name a file (and heading) that
// exists in the repository.
func TestLinksStayInRepo(t *testing.T) {
	files := repoFiles(t, ".md", ".yaml", ".yml", ".go", ".py")
	if !slices.Contains(files, filepath.Join(repoRoot, "README.md")) {
		t.Fatalf("README.md not found under %s", repoRoot)
	}
	checked := 0
	for _, f := range files {
		b, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		for n, line := range strings.Split(string(b), "\n") {
			for _, o := range outside {
				if strings.Contains(line, o) {
					t.Errorf("%s:%d points outside the repository (%q): %s", rel(f), n+1, o, strings.TrimSpace(line))
				}
			}
		}
		if strings.HasSuffix(f, ".md") {
			checked += checkMarkdownLinks(t, f, string(b))
		}
	}
	if checked == 0 {
		t.Fatal("no Markdown link found at all: the walk missed README.md and docs/")
	}
}

var (
	inlineLink = regexp.MustCompile(`\]\(([^)\s]+)(?:\s+"[^"]*")?\)`)
	refLink    = regexp.MustCompile(`(?m)^\s*\[[^\]]+\]:\s*(\S+)`)
	scheme     = regexp.MustCompile(`^[a-zA-Z][a-zA-Z0-9+.-]*:`)
)

// checkMarkdownLinks checks every relative link of one Markdown file and
// returns how many it checked. Code (fenced blocks and `spans`) is skipped.
func checkMarkdownLinks(t *testing.T, file, text string) int {
	t.Helper()
	prose := stripCode(text)
	var targets []string
	for _, m := range inlineLink.FindAllStringSubmatch(prose, -1) {
		targets = append(targets, m[1])
	}
	for _, m := range refLink.FindAllStringSubmatch(prose, -1) {
		targets = append(targets, m[1])
	}
	n := 0
	for _, target := range targets {
		if scheme.MatchString(target) {
			continue // http(s), mailto: leave the repository on purpose
		}
		n++
		path, anchor, _ := strings.Cut(target, "#")
		dest := file
		if path != "" {
			if strings.HasPrefix(path, "/") {
				t.Errorf("%s: link %q is absolute; use a path relative to the file", rel(file), target)
				continue
			}
			dest = filepath.Join(filepath.Dir(file), filepath.FromSlash(path))
			if r, err := filepath.Rel(repoRoot, dest); err != nil || strings.HasPrefix(r, "..") {
				t.Errorf("%s: link %q leaves the repository", rel(file), target)
				continue
			}
			if _, err := os.Stat(dest); err != nil {
				t.Errorf("%s: link %q: %s does not exist in the repository", rel(file), target, rel(dest))
				continue
			}
		}
		if anchor != "" && strings.HasSuffix(dest, ".md") {
			b, err := os.ReadFile(dest)
			if err != nil {
				t.Errorf("%s: link %q: %v", rel(file), target, err)
				continue
			}
			if !headingAnchors(string(b))[anchor] {
				t.Errorf("%s: link %q: %s has no heading with anchor #%s", rel(file), target, rel(dest), anchor)
			}
		}
	}
	return n
}

// stripCode blanks fenced code blocks and inline code spans, where a
// bracket followed by a parenthesis is code, not a link.
func stripCode(text string) string {
	var b strings.Builder
	fenced := false
	sc := bufio.NewScanner(strings.NewReader(text))
	sc.Buffer(make([]byte, 0, 64*1024), 1<<20)
	for sc.Scan() {
		line := sc.Text()
		if strings.HasPrefix(strings.TrimSpace(line), "```") {
			fenced = !fenced
			b.WriteString("\n")
			continue
		}
		if fenced {
			b.WriteString("\n")
			continue
		}
		parts := strings.Split(line, "`")
		for i := 1; i < len(parts); i += 2 {
			parts[i] = ""
		}
		b.WriteString(strings.Join(parts, "``"))
		b.WriteString("\n")
	}
	return b.String()
}

// headingAnchors are the anchors the forges make of a Markdown file's
// headings: lower case, punctuation dropped, spaces turned into hyphens.
func headingAnchors(text string) map[string]bool {
	out := map[string]bool{}
	fenced := false
	for _, line := range strings.Split(text, "\n") {
		if strings.HasPrefix(strings.TrimSpace(line), "```") {
			fenced = !fenced
			continue
		}
		if fenced || !strings.HasPrefix(line, "#") {
			continue
		}
		h := strings.TrimSpace(strings.TrimLeft(line, "#"))
		var b strings.Builder
		for _, r := range strings.ToLower(h) {
			switch {
			case r == ' ':
				b.WriteRune('-')
			case r == '-' || r == '_' || unicode.IsLetter(r) || unicode.IsDigit(r):
				b.WriteRune(r)
			}
		}
		out[b.String()] = true
	}
	return out
}

func rel(path string) string {
	if r, err := filepath.Rel(repoRoot, path); err == nil {
		return filepath.ToSlash(r)
	}
	return path
}
