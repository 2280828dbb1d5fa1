package main

import (
	"context"
	"fmt"
	"runtime"
	"runtime/debug"
)

// buildInfo is what the binary knows of its own build.
func buildInfo() (version, commit string) {
	version = "(unknown)"
	bi, ok := debug.ReadBuildInfo()
	if !ok {
		return version, ""
	}
	version = bi.Main.Version
	dirty := false
	for _, s := range bi.Settings {
		switch s.Key {
		case "vcs.revision":
			commit = s.Value
		case "vcs.modified":
			dirty = s.Value == "true"
		}
	}
	if dirty && commit != "" {
		commit += "+dirty"
	}
	return version, commit
}

func version(_ context.Context, c *cli, _ []string) error {
	v, commit := buildInfo()
	if c.o.json {
		return c.writeJSON(struct {
			Version string `json:"version"`
			Commit  string `json:"commit,omitempty"`
			Go      string `json:"go"`
		}{v, commit, runtime.Version()})
	}
	line := "distkit " + v
	if commit != "" {
		line += " " + commit
	}
	fmt.Fprintf(c.stdout, "%s (%s)\n", line, runtime.Version())
	return nil
}
