package main

import (
	"context"
	"errors"
	"fmt"
	neturl "net/url"
	"sort"

	rd "github.com/redis/rueidis"

	"github.com/distkit-go/distkit/backend"
	rueidisbackend "github.com/distkit-go/distkit/backend/rueidis"
)

// conn is the connection to the server, the Cluster or the Sentinel-managed
// master. Everything the library does goes through b; the few commands an
// operator tool needs beyond scripts (SCAN, HSCAN, HLEN, ROLE, SCRIPT
// LOAD) go through the client underneath.
type conn struct {
	b *rueidisbackend.Backend
	c rd.Client
}

// backendErr reports a failure to talk to the backend (exit code 3).
func backendErr(err error) error {
	return &exitError{code: exitBackend, err: err}
}

// dial connects with the rueidis driver's FromURL (see the package doc
// for the URL forms).
func dial(ctx context.Context, url string) (*conn, error) {
	if _, err := rd.ParseURL(url); err != nil {
		return nil, usageErr("--url %s: %v", redactURL(url), withoutURL(err))
	}
	type result struct {
		b   *rueidisbackend.Backend
		err error
	}
	ch := make(chan result, 1)
	go func() {
		b, err := rueidisbackend.FromURL(url)
		ch <- result{b, err}
	}()
	select {
	case r := <-ch:
		if r.err != nil {
			return nil, backendErr(fmt.Errorf("connect %s: %w", redactURL(url), r.err))
		}
		return &conn{b: r.b, c: r.b.Client()}, nil
	case <-ctx.Done():
		go func() {
			if r := <-ch; r.b != nil {
				r.b.Close()
			}
		}()
		return nil, backendErr(fmt.Errorf("connect %s: %w", redactURL(url), ctx.Err()))
	}
}

// withoutURL strips the URL a net/url parse error quotes (password
// included) from err, keeping only what is wrong with it.
func withoutURL(err error) error {
	var ue *neturl.Error
	if errors.As(err, &ue) {
		return ue.Err
	}
	return err
}

func (c *conn) close() { c.b.Close() }

// backend is the library's view of the connection.
func (c *conn) backend() backend.Backend { return c.b }

// node is one server the client knows: every node of a Cluster (masters
// and the replicas the client sees), else the one server.
type node struct {
	addr string
	role string // "master" or "slave" (ROLE)
	c    rd.Client
}

// nodes returns every node with its role, by address.
func (c *conn) nodes(ctx context.Context) ([]node, error) {
	var out []node
	for addr, n := range c.c.Nodes() {
		a, err := n.Do(ctx, n.B().Role().Build()).ToArray()
		if err != nil || len(a) == 0 {
			return nil, backendErr(fmt.Errorf("ROLE on %s: %v", addr, err))
		}
		role, err := a[0].ToString()
		if err != nil {
			return nil, backendErr(fmt.Errorf("ROLE on %s: %v", addr, err))
		}
		out = append(out, node{addr: addr, role: role, c: n})
	}
	sort.Slice(out, func(i, j int) bool { return out[i].addr < out[j].addr })
	return out, nil
}

// masters returns the nodes that hold data: every Cluster master, or the
// one server.
func (c *conn) masters(ctx context.Context) ([]node, error) {
	all, err := c.nodes(ctx)
	if err != nil {
		return nil, err
	}
	var out []node
	for _, n := range all {
		if n.role == "master" {
			out = append(out, n)
		}
	}
	if len(out) == 0 {
		return nil, backendErr(fmt.Errorf("no master among %d nodes", len(all)))
	}
	return out, nil
}

// scan returns every key matching pattern on every master.
func (c *conn) scan(ctx context.Context, pattern string) ([]string, error) {
	ms, err := c.masters(ctx)
	if err != nil {
		return nil, err
	}
	var out []string
	for _, m := range ms {
		cursor := uint64(0)
		for {
			e, err := m.c.Do(ctx, m.c.B().Scan().Cursor(cursor).Match(pattern).Count(1000).Build()).AsScanEntry()
			if err != nil {
				return nil, backendErr(fmt.Errorf("SCAN on %s: %w", m.addr, err))
			}
			out = append(out, e.Elements...)
			if cursor = e.Cursor; cursor == 0 {
				break
			}
		}
	}
	return out, nil
}

// hscan returns the field/value pairs of hash key whose fields match
// pattern.
func (c *conn) hscan(ctx context.Context, key, pattern string) ([]string, error) {
	var out []string
	cursor := uint64(0)
	for {
		e, err := c.c.Do(ctx, c.c.B().Hscan().Key(key).Cursor(cursor).Match(pattern).Count(1000).Build()).AsScanEntry()
		if err != nil {
			return nil, backendErr(fmt.Errorf("HSCAN %s: %w", key, err))
		}
		out = append(out, e.Elements...)
		if cursor = e.Cursor; cursor == 0 {
			return out, nil
		}
	}
}

// hlen returns the number of fields of hash key.
func (c *conn) hlen(ctx context.Context, key string) (int64, error) {
	n, err := c.c.Do(ctx, c.c.B().Hlen().Key(key).Build()).AsInt64()
	if err != nil {
		return 0, backendErr(fmt.Errorf("HLEN %s: %w", key, err))
	}
	return n, nil
}

// scriptLoad loads src on node n and returns the SHA the server reports.
func scriptLoad(ctx context.Context, n node, src string) (string, error) {
	sha, err := n.c.Do(ctx, n.c.B().ScriptLoad().Script(src).Build()).ToString()
	if err != nil {
		return "", backendErr(fmt.Errorf("SCRIPT LOAD on %s: %w", n.addr, err))
	}
	return sha, nil
}
