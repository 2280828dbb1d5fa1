package doccheck

import (
	"bytes"
	"fmt"
	"go/ast"
	"go/doc/comment"
	"go/importer"
	"go/parser"
	"go/token"
	"go/types"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"sort"
	"strings"
	"testing"
)

// raceBuild is set when the test binary runs with -race, so that go list
// reuses the export data the test build already compiled.
var raceBuild bool

// module is this module's path.
const module = "github.com/distkit-go/distkit"

// autoImports are the package names a snippet may use without importing
// them; a snippet that imports a package itself keeps its own import.
// The two drivers go by the aliases every example uses, next to the client
// libraries they wrap.
var autoImports = map[string]string{
	"context":         "context",
	"errors":          "errors",
	"fmt":             "fmt",
	"log":             "log",
	"math":            "math",
	"http":            "net/http",
	"os":              "os",
	"strings":         "strings",
	"strconv":         "strconv",
	"sync":            "sync",
	"testing":         "testing",
	"time":            "time",
	"distkit":         module,
	"backend":         module + "/backend",
	"driver":          module + "/backend/driver",
	"memory":          module + "/backend/memory",
	"rueidisbackend":  module + "/backend/rueidis",
	"goredisbackend":  module + "/backend/goredis",
	"counter":         module + "/primitives/counter",
	"instancecounter": module + "/primitives/instancecounter",
	"lock":            module + "/primitives/lock",
	"semaphore":       module + "/primitives/semaphore",
	"election":        module + "/primitives/election",
	"ratelimit":       module + "/primitives/ratelimit",
	"httplimit":       module + "/primitives/ratelimit/httplimit",
	"conformance":     module + "/conformance",
	"otelbackend":     module + "/backend/otelbackend",
	"slog":            "log/slog",
	"rueidis":         "github.com/redis/rueidis",
	"redis":           "github.com/redis/go-redis/v9",
}

// userPackages must open their documentation with a Go snippet.
var userPackages = []string{
	"", "backend", "backend/driver", "backend/memory", "backend/rueidis", "backend/goredis",
	"primitives/counter", "primitives/instancecounter", "primitives/lock", "primitives/ratelimit",
	"primitives/ratelimit/httplimit", "conformance",
}

// snippet is one code block of the documentation.
type snippet struct {
	where string // "README.md block 3", "package primitives/lock block 1"
	text  string
	must  bool // must be Go (README go fences, a package doc's first block)
}

func root(t *testing.T) string {
	t.Helper()
	dir, err := os.Getwd()
	if err != nil {
		t.Fatal(err)
	}
	for {
		if _, err := os.Stat(filepath.Join(dir, "go.mod")); err == nil {
			return dir
		}
		parent := filepath.Dir(dir)
		if parent == dir {
			t.Fatal("go.mod not found")
		}
		dir = parent
	}
}

var fence = regexp.MustCompile("(?ms)^```go\n(.*?)^```")

func readmeSnippets(t *testing.T, dir string) []snippet {
	raw, err := os.ReadFile(filepath.Join(dir, "README.md"))
	if err != nil {
		t.Fatal(err)
	}
	var out []snippet
	for i, m := range fence.FindAllStringSubmatch(string(raw), -1) {
		out = append(out, snippet{where: fmt.Sprintf("README.md go block %d", i+1), text: m[1], must: true})
	}
	if len(out) == 0 {
		t.Fatal("README.md has no go code blocks")
	}
	return out
}

// packageDocs returns the package documentation of every package of the
// module outside internal/, keyed by its directory relative to the root.
func packageDocs(t *testing.T, dir string) map[string]string {
	docs := map[string]string{}
	err := filepath.WalkDir(dir, func(path string, d os.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if !d.IsDir() {
			return nil
		}
		rel, _ := filepath.Rel(dir, path)
		if rel == "." {
			rel = ""
		}
		base := d.Name()
		if rel != "" && (strings.HasPrefix(base, ".") || base == "testdata" || base == "internal") {
			return filepath.SkipDir
		}
		if rel != "" {
			if _, err := os.Stat(filepath.Join(path, "go.mod")); err == nil {
				return filepath.SkipDir // another module
			}
		}
		fset := token.NewFileSet()
		pkgs, err := parser.ParseDir(fset, path, func(fi os.FileInfo) bool {
			return !strings.HasSuffix(fi.Name(), "_test.go")
		}, parser.ParseComments|parser.PackageClauseOnly)
		if err != nil {
			return err
		}
		for _, p := range pkgs {
			var text strings.Builder
			for _, f := range p.Files {
				if f.Doc != nil {
					text.WriteString(f.Doc.Text())
				}
			}
			docs[filepath.ToSlash(rel)] = text.String()
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return docs
}

// docSnippets returns the code blocks of a package doc; the first must be
// Go and must come before the first heading.
func docSnippets(t *testing.T, rel, doc string, required bool) []snippet {
	var p comment.Parser
	d := p.Parse(doc)
	var out []snippet
	headingSeen := false
	for _, blk := range d.Content {
		switch b := blk.(type) {
		case *comment.Heading:
			headingSeen = true
		case *comment.Code:
			first := len(out) == 0
			if first && required && headingSeen {
				t.Errorf("package %q: the documentation does not open with a snippet (its first code block follows a heading)", rel)
			}
			out = append(out, snippet{where: fmt.Sprintf("package %q doc block %d", rel, len(out)+1), text: b.Text, must: first && required})
		}
	}
	if required && len(out) == 0 {
		t.Errorf("package %q: the documentation has no code snippet", rel)
	}
	return out
}

// looksLikeGo is a guard for blocks that do not parse: prose blocks (key
// layouts, formulas) are skipped, broken Go is not.
var looksLikeGo = regexp.MustCompile(`:=|\bfunc\b|\bctx\b|\berr\b|\)[ \t]*\{`)

var importLine = regexp.MustCompile(`^import\s+(\w+\s+)?"[^"]+"\s*$`)

// program turns a snippet into a Go file: its own imports, then either its
// declarations as they are, or its statements in the body of func main.
func program(s snippet) (src string, ok bool, perr error) {
	lines := strings.Split(strings.TrimRight(s.text, "\n"), "\n")
	var imports, rest []string
	i := 0
	for ; i < len(lines); i++ {
		l := strings.TrimSpace(lines[i])
		switch {
		case l == "":
			continue
		case l == "import (":
			for ; i < len(lines); i++ {
				imports = append(imports, lines[i])
				if strings.TrimSpace(lines[i]) == ")" {
					break
				}
			}
			continue
		case importLine.MatchString(l):
			imports = append(imports, l)
			continue
		}
		break
	}
	rest = lines[i:]
	body := strings.Join(rest, "\n")
	head := "package main\n\n" + strings.Join(imports, "\n") + "\n\n"
	fset := token.NewFileSet()
	asFile := head + body + "\n"
	if strings.HasPrefix(strings.TrimSpace(body), "package ") {
		return strings.Join(lines, "\n") + "\n", true, nil
	}
	_, errFile := parser.ParseFile(fset, "", asFile, parser.AllErrors)
	if errFile == nil {
		if !strings.Contains(body, "func main()") {
			asFile += "\nfunc main() {}\n"
		}
		return asFile, true, nil
	}
	asMain := head + "func main() {\n" + body + "\n}\n"
	if _, err := parser.ParseFile(fset, "", asMain, parser.AllErrors); err == nil {
		return asMain, true, nil
	} else if s.must || looksLikeGo.MatchString(s.text) {
		return "", false, fmt.Errorf("does not parse as declarations (%v) nor as statements (%v)", errFile, err)
	}
	return "", false, nil
}

// withAutoImports adds the imports of the package names src uses but does
// not import.
func withAutoImports(src string) (string, []string, error) {
	fset := token.NewFileSet()
	f, err := parser.ParseFile(fset, "", src, parser.ImportsOnly)
	if err != nil {
		return "", nil, err
	}
	have := map[string]bool{}
	var paths []string
	for _, im := range f.Imports {
		p := strings.Trim(im.Path.Value, `"`)
		paths = append(paths, p)
		name := p[strings.LastIndex(p, "/")+1:]
		if p == "github.com/redis/go-redis/v9" {
			name = "redis"
		}
		if im.Name != nil {
			name = im.Name.Name
		}
		have[name] = true
	}
	var add []string
	names := make([]string, 0, len(autoImports))
	for n := range autoImports {
		names = append(names, n)
	}
	sort.Strings(names)
	for _, n := range names {
		if have[n] || !regexp.MustCompile(`\b`+n+`\.`).MatchString(src) {
			continue
		}
		add = append(add, fmt.Sprintf("import %s %q", n, autoImports[n]))
		paths = append(paths, autoImports[n])
	}
	if len(add) == 0 {
		return src, paths, nil
	}
	out := strings.Replace(src, "package main\n", "package main\n\n"+strings.Join(add, "\n")+"\n", 1)
	return out, paths, nil
}

// exportData compiles pkgs and returns where the compiler left their
// export data.
func exportData(t *testing.T, dir string, pkgs []string) map[string]string {
	args := []string{"list", "-export", "-deps", "-f", "{{.ImportPath}}\t{{.Export}}"}
	if raceBuild {
		args = append(args, "-race")
	}
	cmd := exec.Command("go", append(args, pkgs...)...)
	cmd.Dir = dir
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("go list -export: %v\n%s", err, stderr.String())
	}
	m := map[string]string{}
	for _, l := range strings.Split(string(out), "\n") {
		if p, e, ok := strings.Cut(l, "\t"); ok && e != "" {
			m[p] = e
		}
	}
	return m
}

func numbered(src string) string {
	var b strings.Builder
	for i, l := range strings.Split(src, "\n") {
		fmt.Fprintf(&b, "%3d  %s\n", i+1, l)
	}
	return b.String()
}

// TestSnippetsCompile builds every Go block of README.md and the first
// (and every other Go) block of each package's documentation.
func TestSnippetsCompile(t *testing.T) {
	dir := root(t)
	snips := readmeSnippets(t, dir)
	docs := packageDocs(t, dir)
	required := map[string]bool{}
	for _, p := range userPackages {
		required[p] = true
		if _, ok := docs[p]; !ok {
			t.Errorf("package %q not found", p)
		}
	}
	rels := make([]string, 0, len(docs))
	for rel := range docs {
		rels = append(rels, rel)
	}
	sort.Strings(rels)
	for _, rel := range rels {
		snips = append(snips, docSnippets(t, rel, docs[rel], required[rel])...)
	}

	type prog struct {
		s   snippet
		src string
	}
	var progs []prog
	need := map[string]bool{}
	for _, s := range snips {
		src, ok, err := program(s)
		if err != nil {
			t.Errorf("%s: %v:\n%s", s.where, err, s.text)
			continue
		}
		if !ok {
			continue
		}
		src, paths, err := withAutoImports(src)
		if err != nil {
			t.Errorf("%s: %v", s.where, err)
			continue
		}
		for _, p := range paths {
			need[p] = true
		}
		progs = append(progs, prog{s, src})
	}
	pkgs := make([]string, 0, len(need))
	for p := range need {
		pkgs = append(pkgs, p)
	}
	sort.Strings(pkgs)
	exports := exportData(t, dir, pkgs)

	fset := token.NewFileSet()
	imp := importer.ForCompiler(fset, "gc", func(path string) (io.ReadCloser, error) {
		f, ok := exports[path]
		if !ok {
			return nil, fmt.Errorf("no export data for %q", path)
		}
		return os.Open(f)
	})
	for _, p := range progs {
		f, err := parser.ParseFile(fset, p.s.where, p.src, 0)
		if err != nil {
			t.Errorf("%s: %v", p.s.where, err)
			continue
		}
		var errs []string
		conf := types.Config{Importer: imp, Error: func(err error) {
			te := err.(types.Error)
			if te.Soft && strings.Contains(te.Msg, "not used") {
				return
			}
			errs = append(errs, fmt.Sprintf("line %d: %s", fset.Position(te.Pos).Line, te.Msg))
		}}
		conf.Check("main", fset, []*ast.File{f}, nil)
		if len(errs) > 0 {
			t.Errorf("%s does not compile:\n  %s\nas built:\n%s", p.s.where, strings.Join(errs, "\n  "), numbered(p.src))
		}
	}
	t.Logf("%d snippets checked", len(progs))
}
