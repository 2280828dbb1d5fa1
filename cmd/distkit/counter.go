package main

import (
	"context"
	"fmt"
	"sort"
	"strconv"

	"github.com/distkit-go/distkit/internal/inspect"
	"github.com/distkit-go/distkit/internal/keyspace"
	"github.com/distkit-go/distkit/primitives/counter"
)

// jsonCounter is one counter in JSON output.
type jsonCounter struct {
	Key       string `json:"key"`
	KeyBase64 string `json:"key_base64,omitempty"`
	Value     int64  `json:"value"`
	Exists    bool   `json:"exists"`
}

func toJSONCounters(cs []inspect.Counter) []jsonCounter {
	out := make([]jsonCounter, len(cs))
	for i, c := range cs {
		out[i] = jsonCounter{Key: c.Key, KeyBase64: b64(c.Key), Value: c.Value, Exists: c.Exists}
	}
	return out
}

// printCounters prints counters as a table or one JSON document.
func (c *cli) printCounters(cs []inspect.Counter, extra map[string]any) error {
	if c.o.json {
		doc := map[string]any{"prefix": c.o.prefix, "counters": toJSONCounters(cs)}
		if b := b64(c.o.prefix); b != "" {
			doc["prefix_base64"] = b
		}
		for k, v := range extra {
			doc[k] = v
		}
		return c.writeJSON(doc)
	}
	rows := [][]string{{"KEY", "VALUE"}}
	for _, x := range cs {
		v := "-"
		if x.Exists {
			v = strconv.FormatInt(x.Value, 10)
		}
		rows = append(rows, []string{disp(x.Key), v})
	}
	c.table(rows)
	return nil
}

// strict is the library's Strict counter for writes.
func (c *cli) strict() (*counter.Strict, error) {
	return counter.NewStrict(c.conn.backend(), counter.Options{Prefix: c.o.prefix})
}

func counterGet(ctx context.Context, c *cli, keys []string) error {
	cs, err := inspect.Counters(ctx, c.conn.backend(), c.o.prefix, keys)
	if err != nil {
		return err
	}
	if err := c.printCounters(cs, nil); err != nil {
		return err
	}
	for _, x := range cs {
		if !x.Exists {
			return notFound("counter %s not found", disp(x.Key))
		}
	}
	return nil
}

func checkSet(c *cli, args []string) error {
	if err := checkKeys("key")(c, args[:1]); err != nil {
		return err
	}
	if _, err := strconv.ParseInt(args[1], 10, 64); err != nil {
		return usageErr("counter set: VALUE %q is not an int64", args[1])
	}
	return nil
}

func counterSet(ctx context.Context, c *cli, args []string) error {
	key := args[0]
	v, _ := strconv.ParseInt(args[1], 10, 64) // checked by checkSet
	s, err := c.strict()
	if err != nil {
		return err
	}
	defer s.Close(ctx)
	n, err := s.Set(ctx, key, v)
	if err != nil {
		return err
	}
	return c.printCounters([]inspect.Counter{{Key: key, Value: n, Exists: true}}, nil)
}

func counterList(ctx context.Context, c *cli, args []string) error {
	pattern, g := patternArg(args)
	kv, err := c.conn.hscan(ctx, keyspace.CounterHash(c.o.prefix), keyspace.CounterFieldMatch(g.literalPrefix()))
	if err != nil {
		return err
	}
	all, err := inspect.DecodeCounterEntries(kv)
	if err != nil {
		return err
	}
	var cs []inspect.Counter
	for _, x := range all {
		if g.match(x.Key) {
			cs = append(cs, x)
		}
	}
	sort.Slice(cs, func(i, j int) bool { return cs[i].Key < cs[j].Key })
	extra := map[string]any{"pattern": pattern}
	if b := b64(pattern); b != "" {
		extra["pattern_base64"] = b
	}
	return c.printCounters(cs, extra)
}

func counterDel(ctx context.Context, c *cli, args []string) error {
	key := args[0]
	cs, err := inspect.Counters(ctx, c.conn.backend(), c.o.prefix, args)
	if err != nil {
		return err
	}
	if !cs[0].Exists {
		return notFound("counter %s not found", disp(key))
	}
	if ctx, err = c.confirm(ctx, "delete counter "+disp(key), fmt.Sprintf("value %d, prefix %s", cs[0].Value, disp(c.o.prefix))); err != nil {
		return err
	}
	s, err := c.strict()
	if err != nil {
		return err
	}
	defer s.Close(ctx)
	old, err := s.Del(ctx, key)
	if err != nil {
		return err
	}
	if c.o.json {
		return c.writeJSON(struct {
			Prefix       string `json:"prefix"`
			PrefixBase64 string `json:"prefix_base64,omitempty"`
			Key          string `json:"key"`
			KeyBase64    string `json:"key_base64,omitempty"`
			Value        int64  `json:"value"`
		}{c.o.prefix, b64(c.o.prefix), key, b64(key), old})
	}
	fmt.Fprintf(c.stdout, "deleted counter %s (value was %d)\n", disp(key), old)
	return nil
}

func counterClear(ctx context.Context, c *cli, _ []string) error {
	n, err := c.conn.hlen(ctx, keyspace.CounterHash(c.o.prefix))
	if err != nil {
		return err
	}
	if n > 0 {
		if ctx, err = c.confirm(ctx, "clear every counter of prefix "+disp(c.o.prefix), fmt.Sprintf("%d counters", n)); err != nil {
			return err
		}
		s, err := c.strict()
		if err != nil {
			return err
		}
		defer s.Close(ctx)
		if err := s.Clear(ctx); err != nil {
			return err
		}
	}
	if c.o.json {
		doc := map[string]any{"prefix": c.o.prefix, "cleared": n}
		if b := b64(c.o.prefix); b != "" {
			doc["prefix_base64"] = b
		}
		return c.writeJSON(doc)
	}
	fmt.Fprintf(c.stdout, "cleared %d counters under prefix %s\n", n, disp(c.o.prefix))
	return nil
}
