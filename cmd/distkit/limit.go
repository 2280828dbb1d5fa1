package main

import (
	"context"
	"fmt"
	"strconv"
	"time"

	"github.com/distkit-go/distkit/internal/inspect"
)

type jsonBucket struct {
	StartAt string `json:"start_at"`
	Count   int64  `json:"count"`
	Live    bool   `json:"live"`
}

type jsonLimit struct {
	Prefix       string       `json:"prefix"`
	Key          string       `json:"key"`
	KeyBase64    string       `json:"key_base64,omitempty"`
	Exists       bool         `json:"exists"`
	ServerTime   string       `json:"server_time"`
	WindowMs     int64        `json:"window_ms"`
	BucketMs     int64        `json:"bucket_ms"`
	Count        int64        `json:"count"`
	StoredTotal  int64        `json:"stored_total"`
	Limit        *int64       `json:"limit,omitempty"`
	Remaining    *int64       `json:"remaining,omitempty"`
	RetryAfterMs *int64       `json:"retry_after_ms,omitempty"`
	TTLMs        int64        `json:"ttl_ms"`
	Buckets      []jsonBucket `json:"buckets"`
}

// checkLimitShow checks the key, and --window and --bucket as the limiter
// checks its options.
func checkLimitShow(c *cli, args []string) error {
	if err := checkKeys("key")(c, args); err != nil {
		return err
	}
	w, b := c.o.window, c.o.bucket
	switch {
	case b < time.Millisecond || b%time.Millisecond != 0:
		return usageErr("--bucket %v must be a whole number of milliseconds", b)
	case w < b || w%b != 0:
		return usageErr("--bucket %v does not divide --window %v", b, w)
	case c.set["limit"] && c.o.limit < 0:
		return usageErr("--limit %d is negative", c.o.limit)
	}
	return nil
}

func limitShow(ctx context.Context, c *cli, args []string) error {
	key := args[0]
	l, err := inspect.ReadLimit(ctx, c.conn.backend(), c.o.prefix, key)
	if err != nil {
		return err
	}
	w := l.Window(c.o.window, c.o.bucket)
	j := jsonLimit{Prefix: c.o.prefix, Key: key, KeyBase64: b64(key), Exists: l.Exists, ServerTime: jsonTime(l.Now),
		WindowMs: ms(c.o.window), BucketMs: ms(c.o.bucket), Count: w.Count, StoredTotal: l.Stored, TTLMs: ms(l.TTL),
		Buckets: []jsonBucket{}}
	for _, b := range w.Buckets {
		j.Buckets = append(j.Buckets, jsonBucket{StartAt: jsonTime(b.Start), Count: b.Count, Live: b.Live})
	}
	if c.set["limit"] {
		limit, rem := c.o.limit, max(c.o.limit-w.Count, 0)
		retry := ms(l.RetryAfter(c.o.window, c.o.bucket, c.o.limit, 1))
		j.Limit, j.Remaining, j.RetryAfterMs = &limit, &rem, &retry
	}
	if c.o.json {
		if err := c.writeJSON(j); err != nil {
			return err
		}
	} else {
		live := 0
		for _, b := range w.Buckets {
			if b.Live {
				live++
			}
		}
		rows := [][]string{
			{"key:", disp(key)},
			{"prefix:", disp(c.o.prefix)},
			{"window:", fmt.Sprintf("%v in buckets of %v (--window, --bucket)", c.o.window, c.o.bucket)},
			{"count:", fmt.Sprintf("%d in the window now (stored total %d)", w.Count, l.Stored)},
		}
		if j.Limit != nil {
			retry := "now"
			switch {
			case *j.RetryAfterMs < 0:
				retry = "never (limit 0)"
			case *j.RetryAfterMs > 0:
				retry = "in " + human(time.Duration(*j.RetryAfterMs)*time.Millisecond)
			}
			rows = append(rows,
				[]string{"limit:", strconv.FormatInt(*j.Limit, 10)},
				[]string{"remaining:", strconv.FormatInt(*j.Remaining, 10)},
				[]string{"next allowed:", retry})
		}
		if !w.Oldest.IsZero() {
			rows = append(rows, []string{"oldest leaves:", when(w.Oldest, l.Now)})
		}
		expires := "-"
		if l.Exists {
			expires = "in " + human(l.TTL)
		}
		rows = append(rows,
			[]string{"buckets:", fmt.Sprintf("%d live, %d expired", live, len(w.Buckets)-live)},
			[]string{"expires:", expires})
		c.table(rows)
	}
	if !l.Exists {
		return notFound("no window for key %s under prefix %s", disp(key), disp(c.o.prefix))
	}
	return nil
}

func limitReset(ctx context.Context, c *cli, args []string) error {
	key := args[0]
	l, err := inspect.ReadLimit(ctx, c.conn.backend(), c.o.prefix, key)
	if err != nil {
		return err
	}
	if !l.Exists {
		return notFound("no window for key %s under prefix %s: nothing to reset", disp(key), disp(c.o.prefix))
	}
	if err := c.confirm("reset the window of "+disp(key), fmt.Sprintf("stored total %d, prefix %s", l.Stored, disp(c.o.prefix))); err != nil {
		return err
	}
	existed, err := inspect.ResetLimit(ctx, c.conn.backend(), c.o.prefix, key)
	if err != nil {
		return err
	}
	if c.o.json {
		return c.writeJSON(struct {
			Prefix      string `json:"prefix"`
			Key         string `json:"key"`
			KeyBase64   string `json:"key_base64,omitempty"`
			Reset       bool   `json:"reset"`
			StoredTotal int64  `json:"stored_total"`
		}{c.o.prefix, key, b64(key), existed, l.Stored})
	}
	fmt.Fprintf(c.stdout, "reset the window of %s (stored total was %d)\n", disp(key), l.Stored)
	return nil
}
