package main

import (
	"context"
	"fmt"
	"strconv"

	"github.com/distkit-go/distkit/internal/scriptset"
)

type jsonScript struct {
	Name string `json:"name"`
	SHA  string `json:"sha"`
}

type jsonNode struct {
	Addr   string `json:"addr"`
	Role   string `json:"role"`
	Loaded int    `json:"loaded"`
}

// scriptsLoad loads every script of distkit's primitives on every node the
// client knows: each Cluster master (and the replicas it lists, so that a
// promoted replica has them too), or the one server.
func scriptsLoad(ctx context.Context, c *cli, _ []string) error {
	nodes, err := c.conn.nodes(ctx)
	if err != nil {
		return err
	}
	scripts := scriptset.All()
	var out []jsonNode
	for _, n := range nodes {
		for _, s := range scripts {
			sha, err := scriptLoad(ctx, n, s.Source())
			if err != nil {
				return err
			}
			if sha != s.SHA() {
				return backendErr(fmt.Errorf("SCRIPT LOAD of %s on %s returned %s, want %s", s.Name(), n.addr, sha, s.SHA()))
			}
		}
		out = append(out, jsonNode{Addr: n.addr, Role: n.role, Loaded: len(scripts)})
	}
	if c.o.json {
		doc := struct {
			Scripts []jsonScript `json:"scripts"`
			Nodes   []jsonNode   `json:"nodes"`
		}{Nodes: out}
		for _, s := range scripts {
			doc.Scripts = append(doc.Scripts, jsonScript{s.Name(), s.SHA()})
		}
		return c.writeJSON(doc)
	}
	rows := [][]string{{"NODE", "ROLE", "LOADED"}}
	for _, n := range out {
		rows = append(rows, []string{n.Addr, n.Role, strconv.Itoa(n.Loaded)})
	}
	c.table(rows)
	fmt.Fprintln(c.stdout)
	rows = [][]string{{"SCRIPT", "SHA"}}
	for _, s := range scripts {
		rows = append(rows, []string{s.Name(), s.SHA()})
	}
	c.table(rows)
	return nil
}
