package main

import (
	"context"
	"fmt"
	"sort"
	"strconv"
	"strings"

	"github.com/distkit-go/distkit/internal/inspect"
	"github.com/distkit-go/distkit/internal/keyspace"
)

type jsonLease struct {
	Owner       string `json:"owner"`
	OwnerBase64 string `json:"owner_base64,omitempty"`
	Acquisition string `json:"acquisition"`
	Token       int64  `json:"token"`
	AcquiredAt  string `json:"acquired_at,omitempty"`
	TTLMs       int64  `json:"ttl_ms"`
}

type jsonWaiter struct {
	Kind        string `json:"kind"`
	Owner       string `json:"owner"`
	OwnerBase64 string `json:"owner_base64,omitempty"`
	Acquisition string `json:"acquisition"`
	TTLMs       int64  `json:"ttl_ms"`
	Position    int    `json:"position,omitempty"` // place in the FIFO queue, 1 = next
}

type jsonLock struct {
	Name       string       `json:"name"`
	NameBase64 string       `json:"name_base64,omitempty"`
	Exists     bool         `json:"exists"`
	State      string       `json:"state"`
	Holder     *jsonLease   `json:"holder"`
	Readers    []jsonLease  `json:"readers"`
	Waiters    []jsonWaiter `json:"waiters"`
	Fence      int64        `json:"fence"`
	ServerTime string       `json:"server_time"`
}

func toJSONLease(l inspect.Lease) jsonLease {
	return jsonLease{Owner: l.Owner, OwnerBase64: b64(l.Owner), Acquisition: l.Acquisition, Token: l.Token,
		AcquiredAt: jsonTime(l.Acquired), TTLMs: ms(l.TTL)}
}

func toJSONLock(l *inspect.Lock) jsonLock {
	j := jsonLock{Name: l.Name, NameBase64: b64(l.Name), Exists: l.Exists(), State: l.State(),
		Readers: []jsonLease{}, Waiters: []jsonWaiter{}, Fence: l.Fence, ServerTime: jsonTime(l.Now)}
	if l.Holder != nil {
		h := toJSONLease(*l.Holder)
		j.Holder = &h
	}
	for _, r := range l.Readers {
		j.Readers = append(j.Readers, toJSONLease(r))
	}
	for _, w := range l.Waiters {
		j.Waiters = append(j.Waiters, jsonWaiter{Kind: w.Kind, Owner: w.Owner, OwnerBase64: b64(w.Owner),
			Acquisition: w.Acquisition, TTLMs: ms(w.TTL), Position: w.Position})
	}
	return j
}

func lockShow(ctx context.Context, c *cli, args []string) error {
	name := args[0]
	l, err := inspect.ReadLock(ctx, c.conn.backend(), c.o.prefix, name)
	if err != nil {
		return err
	}
	if c.o.json {
		j := toJSONLock(&l)
		if err := c.writeJSON(struct {
			Prefix       string `json:"prefix"`
			PrefixBase64 string `json:"prefix_base64,omitempty"`
			jsonLock
		}{c.o.prefix, b64(c.o.prefix), j}); err != nil {
			return err
		}
	} else {
		c.printLock(&l)
	}
	if !l.Exists() {
		return notFound("lock %s not found under prefix %s", disp(name), disp(c.o.prefix))
	}
	return nil
}

// printLock prints one lock for people: its summary, then a table of its
// leases and waiters.
func (c *cli) printLock(l *inspect.Lock) {
	state := l.State()
	switch state {
	case "held":
		state = "held (exclusive)"
	case "read":
		state = fmt.Sprintf("read (%d readers)", len(l.Readers))
	}
	fence := "-"
	if l.Fence != 0 {
		fence = strconv.FormatInt(l.Fence, 10)
	}
	c.table([][]string{
		{"name:", disp(l.Name)},
		{"prefix:", disp(c.o.prefix)},
		{"state:", state},
		{"fence:", fence + " (last token issued)"},
		{"server time:", l.Now.UTC().Format("2006-01-02T15:04:05.000Z")},
	})
	if l.Holder == nil && len(l.Readers) == 0 && len(l.Waiters) == 0 {
		return
	}
	fmt.Fprintln(c.stdout)
	rows := [][]string{{"ROLE", "OWNER", "ACQUISITION", "TOKEN", "ACQUIRED", "TTL"}}
	lease := func(role string, x inspect.Lease) {
		acquired := "-"
		if !x.Acquired.IsZero() {
			acquired = when(x.Acquired, l.Now)
		}
		rows = append(rows, []string{role, disp(x.Owner), x.Acquisition, strconv.FormatInt(x.Token, 10), acquired, human(x.TTL)})
	}
	if l.Holder != nil {
		lease("holder", *l.Holder)
	}
	for _, r := range l.Readers {
		lease("reader", r)
	}
	for _, w := range l.Waiters {
		role := "waiting " + w.Kind
		if w.Kind == "queued" {
			role = "queued #" + strconv.Itoa(w.Position)
		}
		rows = append(rows, []string{role, disp(w.Owner), w.Acquisition, "-", "-", human(w.TTL)})
	}
	c.table(rows)
}

func lockList(ctx context.Context, c *cli, args []string) error {
	pattern, g := patternArg(args)
	keys, err := c.conn.scan(ctx, keyspace.LockMatch(c.o.prefix, g.literalPrefix()))
	if err != nil {
		return err
	}
	seen := map[string]bool{}
	var names []string
	for _, k := range keys {
		if name, ok := keyspace.ParseLockKey(c.o.prefix, k); ok && !seen[name] && g.match(name) {
			seen[name] = true
			names = append(names, name)
		}
	}
	sort.Strings(names)
	locks, err := inspect.ReadLocks(ctx, c.conn.backend(), c.o.prefix, names)
	if err != nil {
		return err
	}
	if c.o.json {
		out := struct {
			Prefix        string     `json:"prefix"`
			PrefixBase64  string     `json:"prefix_base64,omitempty"`
			Pattern       string     `json:"pattern"`
			PatternBase64 string     `json:"pattern_base64,omitempty"`
			Locks         []jsonLock `json:"locks"`
		}{c.o.prefix, b64(c.o.prefix), pattern, b64(pattern), []jsonLock{}}
		for i := range locks {
			if locks[i].Exists() {
				out.Locks = append(out.Locks, toJSONLock(&locks[i]))
			}
		}
		return c.writeJSON(out)
	}
	rows := [][]string{{"NAME", "STATE", "OWNER", "TOKEN", "TTL", "READERS", "WAITING", "FENCE"}}
	for i := range locks {
		l := &locks[i]
		if !l.Exists() { // gone between SCAN and read
			continue
		}
		owner, token, ttl := "-", "-", "-"
		if l.Holder != nil {
			owner, token, ttl = disp(l.Holder.Owner), strconv.FormatInt(l.Holder.Token, 10), human(l.Holder.TTL)
		}
		var waiting []string
		for _, w := range l.Waiters {
			waiting = append(waiting, w.Kind+" "+disp(w.Owner))
		}
		if waiting == nil {
			waiting = []string{"-"}
		}
		rows = append(rows, []string{disp(l.Name), l.State(), owner, token, ttl, strconv.Itoa(len(l.Readers)),
			strings.Join(waiting, ","), strconv.FormatInt(l.Fence, 10)})
	}
	c.table(rows)
	return nil
}

func lockBreak(ctx context.Context, c *cli, args []string) error {
	name := args[0]
	l, err := inspect.ReadLock(ctx, c.conn.backend(), c.o.prefix, name)
	if err != nil {
		return err
	}
	if l.Holder == nil && len(l.Readers) == 0 {
		return notFound("lock %s is not held under prefix %s: nothing to break", disp(name), disp(c.o.prefix))
	}
	var who []string
	if l.Holder != nil {
		who = append(who, fmt.Sprintf("holder %s, token %d, ttl %s", disp(l.Holder.Owner), l.Holder.Token, human(l.Holder.TTL)))
	}
	if n := len(l.Readers); n > 0 {
		who = append(who, fmt.Sprintf("%d reader(s)", n))
	}
	if ctx, err = c.confirm(ctx, "break lock "+disp(name), strings.Join(who, "; ")); err != nil {
		return err
	}
	got, err := inspect.BreakLock(ctx, c.conn.backend(), c.o.prefix, l)
	if err != nil {
		return err
	}
	if c.o.json {
		out := struct {
			Prefix       string     `json:"prefix"`
			PrefixBase64 string     `json:"prefix_base64,omitempty"`
			Name         string     `json:"name"`
			NameBase64   string     `json:"name_base64,omitempty"`
			Holder       *jsonLease `json:"holder"`
			Readers      int        `json:"readers_removed"`
			Fence        int64      `json:"fence"`
		}{Prefix: c.o.prefix, PrefixBase64: b64(c.o.prefix), Name: name, NameBase64: b64(name), Readers: got.Readers, Fence: l.Fence}
		if got.Holder {
			h := toJSONLease(*l.Holder)
			out.Holder = &h
		}
		if err := c.writeJSON(out); err != nil {
			return err
		}
	} else {
		holder := "no holder"
		if got.Holder {
			holder = fmt.Sprintf("holder %s (token %d)", disp(l.Holder.Owner), l.Holder.Token)
		}
		fmt.Fprintf(c.stdout, "broke lock %s: %s, %d reader(s); fence stays at %d\n", disp(name), holder, got.Readers, l.Fence)
	}
	if !got.Holder && got.Readers == 0 {
		return notFound("lock %s: its leases changed since they were read (released, or taken by someone else); nothing was broken", disp(name))
	}
	return nil
}
