package scriptset_test

import (
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"

	"github.com/distkit-go/distkit/internal/scriptset"
)

// Every script defined in the primitives' script packages (and the driver
// toolkit's leases) is in All, not only those each package's own All
// lists: scripts load must preload every script the primitives run.
func TestReview19_EveryDefinedScriptListed(t *testing.T) {
	listed := map[string]bool{}
	for _, s := range scriptset.All() {
		listed[s.Name()] = true
	}
	def := regexp.MustCompile(`NewScript\(\s*"([^"]+)"`)
	var files []string
	for _, dir := range []string{"counterscript", "lockscript", "icscript", "ratelimitscript", "semscript", "electscript"} {
		fs, err := filepath.Glob(filepath.Join("..", dir, "*.go"))
		if err != nil || len(fs) == 0 {
			t.Fatalf("%s: %v", dir, err)
		}
		files = append(files, fs...)
	}
	files = append(files, filepath.Join("..", "..", "backend", "driver", "leases.go"))
	n := 0
	for _, f := range files {
		if strings.HasSuffix(f, "_test.go") {
			continue
		}
		src, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		for _, m := range def.FindAllStringSubmatch(string(src), -1) {
			n++
			if !listed[m[1]] {
				t.Errorf("script %q (%s) is not in scriptset.All", m[1], f)
			}
		}
	}
	if n < 10 {
		t.Fatalf("found only %d script definitions", n)
	}
}
