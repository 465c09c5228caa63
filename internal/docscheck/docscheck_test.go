package docscheck

import (
	"cmp"
	"fmt"
	"go/ast"
	"go/parser"
	"go/token"
	"io/fs"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"testing"
	"unicode"
)

// root is the repository root, seen from this package's directory.
const root = "../.."

// TestDocs checks README.md and every Markdown file under docs/:
//
//   - a cited test (TestXxx, FuzzXxx, BenchmarkXxx, ExampleXxx; anywhere in
//     the text) is a func in a *_test.go file of the repository; where the
//     text names its package ("`gateway`: `TestX`, `TestY`" in one list
//     item or paragraph, or "`TestX` in `cmd/confgate`"), in that directory;
//     a cited subtest (`TestX/some_case`) is a string in that package's tests;
//   - a relative link [text](path#anchor) resolves to a file or directory in
//     the repository, and its anchor to a heading of the target;
//   - a repository path in code (`scripts/kafka.sh`, `./cmd/confgate`,
//     `proto/confgate/v1/*.pb.go`) or in prose (docs/clients.md) exists:
//     a path whose first element is a top-level entry of the repository;
//   - nothing points outside the repository (../shared, shared/...).
func TestDocs(t *testing.T) {
	files := markdownFiles(t)
	tests := loadTests(t)
	var problems []string
	for _, f := range files {
		problems = append(problems, checkFile(f, tests)...)
	}
	for _, p := range problems {
		t.Error(p)
	}
	if len(problems) > 0 {
		t.Logf("%d problem(s) in %d Markdown file(s)", len(problems), len(files))
	}
}

func markdownFiles(t *testing.T) []string {
	t.Helper()
	files := []string{filepath.Join(root, "README.md")}
	err := filepath.WalkDir(filepath.Join(root, "docs"), func(path string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if !d.IsDir() && strings.HasSuffix(path, ".md") {
			files = append(files, path)
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return files
}

// testIndex holds the test funcs and string literals of every *_test.go
// file, by directory relative to the root ("gateway", "internal/history").
type testIndex struct {
	funcs   map[string]map[string]bool // dir -> func name
	strs    map[string][]string        // dir -> string literals
	anyFunc map[string][]string        // func name -> dirs
}

func loadTests(t *testing.T) *testIndex {
	t.Helper()
	ix := &testIndex{funcs: map[string]map[string]bool{}, strs: map[string][]string{}, anyFunc: map[string][]string{}}
	fset := token.NewFileSet()
	err := filepath.WalkDir(root, func(path string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if d.IsDir() {
			if path != root && skipDir(d.Name()) {
				return filepath.SkipDir
			}
			return nil
		}
		if !strings.HasSuffix(path, "_test.go") {
			return nil
		}
		// Every build tag counts: kafkafaults tests are cited too.
		f, err := parser.ParseFile(fset, path, nil, parser.SkipObjectResolution)
		if err != nil {
			return fmt.Errorf("parse %s: %w", path, err)
		}
		dir := rel(filepath.Dir(path))
		if ix.funcs[dir] == nil {
			ix.funcs[dir] = map[string]bool{}
		}
		for _, decl := range f.Decls {
			if fn, ok := decl.(*ast.FuncDecl); ok && fn.Recv == nil {
				ix.funcs[dir][fn.Name.Name] = true
				ix.anyFunc[fn.Name.Name] = append(ix.anyFunc[fn.Name.Name], dir)
			}
		}
		ast.Inspect(f, func(n ast.Node) bool {
			if lit, ok := n.(*ast.BasicLit); ok && lit.Kind == token.STRING {
				if s, err := strconv.Unquote(lit.Value); err == nil {
					ix.strs[dir] = append(ix.strs[dir], s)
				}
			}
			return true
		})
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	if len(ix.anyFunc) == 0 {
		t.Fatal("no test funcs found: wrong root?")
	}
	return ix
}

func skipDir(name string) bool {
	return strings.HasPrefix(name, ".") || name == "node_modules" || name == "testdata" || name == "vendor"
}

// rel makes a path relative to the root, slash-separated.
func rel(path string) string {
	r, err := filepath.Rel(root, path)
	if err != nil {
		return path
	}
	return filepath.ToSlash(r)
}

var (
	testNameRe  = regexp.MustCompile(`(?:^|[^A-Za-z0-9_])((?:Test|Benchmark|Fuzz|Example)[A-Z0-9_][A-Za-z0-9_]*)`)
	citationRe  = regexp.MustCompile(`^((?:Test|Benchmark|Fuzz|Example)[A-Z0-9_][A-Za-z0-9_]*)(?:/(.+))?$`)
	linkRe      = regexp.MustCompile(`!?\[([^\]]*)\]\(\s*<?([^)\s>]*)>?(?:\s+"[^"]*")?\s*\)`)
	refDefRe    = regexp.MustCompile(`^\s{0,3}\[[^\]]+\]:\s*<?(\S+?)>?(?:\s.*)?$`)
	contextRe   = regexp.MustCompile(`^\s*(?:\*\([^)]*\)\*\s*)?:`)
	inRe        = regexp.MustCompile(`^\s+in\s+$`)
	listItemRe  = regexp.MustCompile(`^\s*(?:[-*+]|\d+[.)])\s`)
	fenceRe     = regexp.MustCompile("^\\s{0,3}(```+|~~~+)")
	headingRe   = regexp.MustCompile(`^\s{0,3}(#{1,6})\s+(.*?)\s*#*\s*$`)
	sharedRe    = regexp.MustCompile(`(?:^|[^A-Za-z0-9_.-])((?:\.\./)+shared\b\S*|/work/shared\b\S*|shared/\S*)`)
	pathTokenRe = regexp.MustCompile(`[A-Za-z0-9_./*-]+`)
	// prose mentions a path only with a file name extension, so that
	// "client/server" or "SIGKILL/SIGTERM" are not taken for paths
	prosePathRe = regexp.MustCompile(`\.(md|go|sh|proto|ya?ml|json|txt|py|ts|js|mjs|xml|toml|mod|sum|properties)$`)
)

// piece is a part of a Markdown block: a code span, a line of a fenced
// code block, or the prose between code spans.
type piece struct {
	code  bool // code span or fenced code
	fence bool
	text  string
	line  int
}

type checker struct {
	file     string // relative to the root
	text     string
	tests    *testIndex
	problems []string
}

func (c *checker) addf(line int, format string, args ...any) {
	c.problems = append(c.problems, fmt.Sprintf("%s:%d: %s", c.file, line, fmt.Sprintf(format, args...)))
}

func checkFile(path string, tests *testIndex) []string {
	data, err := os.ReadFile(path)
	if err != nil {
		return []string{err.Error()}
	}
	return checkText(rel(path), string(data), tests)
}

// checkText checks the Markdown text of file (relative to the root).
func checkText(file, text string, tests *testIndex) []string {
	c := &checker{file: file, text: text, tests: tests}
	for _, block := range blocks(text) {
		c.checkBlock(block)
	}
	return c.problems
}

// blocks splits Markdown into blocks (paragraphs, list items, headings,
// fenced code) of tokens; a package named as "`dir`:" holds for the rest
// of its block.
func blocks(text string) [][]piece {
	var out [][]piece
	var cur []piece
	flush := func() {
		if len(cur) > 0 {
			out = append(out, cur)
			cur = nil
		}
	}
	var fence string
	for i, line := range strings.Split(text, "\n") {
		n := i + 1
		if fence != "" {
			if m := fenceRe.FindStringSubmatch(line); m != nil && strings.HasPrefix(m[1], fence[:1]) && len(m[1]) >= len(fence) {
				fence = ""
				flush()
				continue
			}
			cur = append(cur, piece{code: true, fence: true, text: line, line: n})
			continue
		}
		if m := fenceRe.FindStringSubmatch(line); m != nil {
			flush()
			fence = m[1]
			continue
		}
		if strings.TrimSpace(line) == "" || listItemRe.MatchString(line) || headingRe.MatchString(line) {
			flush()
		}
		cur = append(cur, splitSpans(line, n)...)
		cur = append(cur, piece{text: "\n", line: n})
		if headingRe.MatchString(line) {
			flush()
		}
	}
	flush()
	return out
}

// splitSpans cuts a line into prose and code spans (a run of N backticks
// closed by a run of N).
func splitSpans(line string, n int) []piece {
	var out []piece
	for {
		i := strings.IndexByte(line, '`')
		if i < 0 {
			break
		}
		j := i
		for j < len(line) && line[j] == '`' {
			j++
		}
		ticks := line[i:j]
		end := -1
		for k := j; k < len(line); {
			m := strings.Index(line[k:], ticks)
			if m < 0 {
				break
			}
			m += k
			e := m + len(ticks)
			if (e == len(line) || line[e] != '`') && (m == 0 || line[m-1] != '`') {
				end = m
				break
			}
			k = e
			for k < len(line) && line[k] == '`' {
				k++
			}
		}
		if end < 0 {
			break
		}
		if i > 0 {
			out = append(out, piece{text: line[:i], line: n})
		}
		out = append(out, piece{code: true, text: strings.TrimSpace(line[j:end]), line: n})
		line = line[end+len(ticks):]
	}
	if line != "" {
		out = append(out, piece{text: line, line: n})
	}
	return out
}

func (c *checker) checkBlock(block []piece) {
	context := "" // the package this block cites tests in, "" for any
	var prose strings.Builder
	proseLine := 0
	for i, tk := range block {
		for _, m := range sharedRe.FindAllStringSubmatch(tk.text, -1) {
			c.addf(tk.line, "%q points outside the repository (to /work/shared): the docs must stand alone", m[1])
		}
		if !tk.code {
			if proseLine == 0 {
				proseLine = tk.line
			}
			prose.WriteString(tk.text)
			for _, name := range testNames(tk.text) {
				c.checkTest(tk.line, name, "", "")
			}
			c.checkPaths(tk, true)
			continue
		}
		if !tk.fence {
			prose.WriteString("\x00") // a code span: never part of a link
		}
		if !tk.fence {
			if m := citationRe.FindStringSubmatch(tk.text); m != nil {
				pkg := context
				if i+2 < len(block) && !block[i+1].code && inRe.MatchString(block[i+1].text) && block[i+2].code && c.isDir(block[i+2].text) {
					pkg = strings.TrimSuffix(block[i+2].text, "/")
				}
				c.checkTest(tk.line, m[1], m[2], pkg)
				continue
			}
			if c.isDir(tk.text) && i+1 < len(block) && !block[i+1].code && contextRe.MatchString(block[i+1].text) {
				context = strings.TrimSuffix(tk.text, "/")
				continue
			}
		}
		for _, name := range testNames(tk.text) {
			c.checkTest(tk.line, name, "", "")
		}
		c.checkPaths(tk, false)
	}
	c.checkLinks(proseLine, prose.String())
}

func testNames(s string) []string {
	var out []string
	for _, m := range testNameRe.FindAllStringSubmatch(s, -1) {
		out = append(out, m[1])
	}
	return out
}

// checkTest: name is a test func, in pkg when not empty; every element of
// the subtest path is a string in that package's tests, as written or with
// the underscores t.Run puts for spaces.
func (c *checker) checkTest(line int, name, subtest, pkg string) {
	dirs := c.tests.anyFunc[name]
	if pkg != "" {
		if !c.tests.funcs[pkg][name] {
			if len(dirs) > 0 {
				c.addf(line, "%s is cited in %s but is a test in %s", name, pkg, strings.Join(dirs, ", "))
			} else {
				c.addf(line, "%s is cited in %s but no *_test.go file has it", name, pkg)
			}
			return
		}
		dirs = []string{pkg}
	} else if len(dirs) == 0 {
		c.addf(line, "%s is cited but no *_test.go file has it", name)
		return
	}
	if subtest == "" {
		return
	}
	for _, part := range strings.Split(subtest, "/") {
		found := false
		for _, d := range dirs {
			for _, s := range c.tests.strs[d] {
				if strings.Contains(s, part) || strings.Contains(s, strings.ReplaceAll(part, "_", " ")) {
					found = true
				}
			}
		}
		if !found {
			c.addf(line, "%s/%s: no test of %s names the subtest %q", name, subtest, strings.Join(dirs, ", "), part)
		}
	}
}

// isDir: s names a directory of the repository ("gateway", "store/").
func (c *checker) isDir(s string) bool {
	if s == "" || strings.ContainsAny(s, " \t*") || strings.HasPrefix(s, "/") || strings.HasPrefix(s, ".") {
		return false
	}
	st, err := os.Stat(filepath.Join(root, filepath.FromSlash(strings.TrimSuffix(s, "/"))))
	return err == nil && st.IsDir()
}

// checkPaths checks the repository paths in a token: a path whose first
// element is a top-level entry of the repository must exist (a glob must
// match). Prose mentions paths only with a file extension.
func (c *checker) checkPaths(tk piece, prose bool) {
	for _, p := range pathTokenRe.FindAllString(tk.text, -1) {
		p = strings.TrimRight(p, ".")
		p = strings.TrimPrefix(p, "./")
		if !strings.Contains(strings.TrimSuffix(p, "/"), "/") || strings.HasPrefix(p, "/") || strings.HasPrefix(p, ".") {
			continue
		}
		if prose && !prosePathRe.MatchString(p) {
			continue
		}
		first, _, _ := strings.Cut(p, "/")
		if !topLevel(first) {
			continue
		}
		full := filepath.Join(root, filepath.FromSlash(p))
		if strings.Contains(p, "*") {
			if m, _ := filepath.Glob(full); len(m) == 0 {
				c.addf(tk.line, "%s matches no file in the repository", p)
			}
			continue
		}
		if _, err := os.Stat(full); err != nil {
			c.addf(tk.line, "%s does not exist in the repository", p)
		}
	}
}

// topLevel: name is a file or directory at the root (not a dot file).
func topLevel(name string) bool {
	if name == "" || strings.HasPrefix(name, ".") || strings.ContainsAny(name, "*") {
		return false
	}
	_, err := os.Stat(filepath.Join(root, name))
	return err == nil
}

// checkLinks checks the relative links of a block's prose (code spans are
// "\x00" there, so a link inside one is not a link).
func (c *checker) checkLinks(line int, prose string) {
	var targets []string
	for _, m := range linkRe.FindAllStringSubmatch(prose, -1) {
		targets = append(targets, m[2])
	}
	for _, l := range strings.Split(prose, "\n") {
		if m := refDefRe.FindStringSubmatch(l); m != nil {
			targets = append(targets, m[1])
		}
	}
	for _, target := range targets {
		c.checkLink(line, target)
	}
}

func (c *checker) checkLink(line int, target string) {
	if target == "" {
		c.addf(line, "empty link target")
		return
	}
	if i := strings.Index(target, ":"); i > 0 && !strings.ContainsAny(target[:i], "/#.") {
		return // a URL: https:, mailto:, ...
	}
	path, frag, _ := strings.Cut(target, "#")
	path, _, _ = strings.Cut(path, "?")
	if strings.HasPrefix(path, "/") {
		c.addf(line, "link %s is absolute: links are relative to the file", target)
		return
	}
	dir := filepath.Dir(filepath.Join(root, filepath.FromSlash(c.file)))
	full := filepath.Join(root, filepath.FromSlash(c.file))
	if path != "" {
		full = filepath.Join(dir, filepath.FromSlash(path))
		if r := rel(full); r == ".." || strings.HasPrefix(r, "../") {
			c.addf(line, "link %s points outside the repository: the docs must stand alone", target)
			return
		}
		if _, err := os.Stat(full); err != nil {
			c.addf(line, "link %s: %s does not exist in the repository", target, rel(full))
			return
		}
	}
	if frag == "" || !strings.HasSuffix(full, ".md") {
		return
	}
	text := c.text
	if path != "" {
		data, err := os.ReadFile(full)
		if err != nil {
			c.addf(line, "link %s: %v", target, err)
			return
		}
		text = string(data)
	}
	anchors := headingAnchors(text)
	if !slices.Contains(anchors, frag) {
		c.addf(line, "link %s: %s has no heading with the anchor #%s", target, cmp.Or(path, c.file), frag)
	}
}

// headingAnchors returns the anchors GitHub gives the headings of Markdown
// text (outside fenced code).
func headingAnchors(text string) []string {
	var out []string
	seen := map[string]int{}
	var fence string
	for _, line := range strings.Split(text, "\n") {
		if m := fenceRe.FindStringSubmatch(line); m != nil {
			switch {
			case fence == "":
				fence = m[1]
			case strings.HasPrefix(m[1], fence[:1]) && len(m[1]) >= len(fence):
				fence = ""
			}
			continue
		}
		if fence != "" {
			continue
		}
		m := headingRe.FindStringSubmatch(line)
		if m == nil {
			continue
		}
		s := slug(m[2])
		if n := seen[s]; n > 0 {
			out = append(out, fmt.Sprintf("%s-%d", s, n))
		} else {
			out = append(out, s)
		}
		seen[s]++
	}
	return out
}

var inlineLinkRe = regexp.MustCompile(`!?\[([^\]]*)\]\([^)]*\)`)

// slug is GitHub's heading anchor: the heading's text, lower case, without
// punctuation but hyphens and underscores, spaces made hyphens.
func slug(heading string) string {
	heading = inlineLinkRe.ReplaceAllString(heading, "$1")
	var b strings.Builder
	for _, r := range strings.ToLower(heading) {
		switch {
		case r == ' ':
			b.WriteRune('-')
		case r == '-' || r == '_' || unicode.IsLetter(r) || unicode.IsNumber(r) || unicode.Is(unicode.M, r):
			b.WriteRune(r)
		}
	}
	return b.String()
}
