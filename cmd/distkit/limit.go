package main

import (
	"context"
	"fmt"
	"strconv"
	"time"

	"github.com/distkit-go/distkit/internal/inspect"
	"github.com/distkit-go/distkit/primitives/ratelimit"
)

type jsonBucket struct {
	StartAt string `json:"start_at,omitempty"`
	Count   int64  `json:"count"`
	Live    bool   `json:"live"`
}

type jsonLimit struct {
	Prefix         string       `json:"prefix"`
	PrefixBase64   string       `json:"prefix_base64,omitempty"`
	Key            string       `json:"key"`
	KeyBase64      string       `json:"key_base64,omitempty"`
	Exists         bool         `json:"exists"`
	ServerTime     string       `json:"server_time"`
	WindowMs       int64        `json:"window_ms"`
	BucketMs       int64        `json:"bucket_ms"`
	Count          int64        `json:"count"`
	StoredTotal    int64        `json:"stored_total"`
	Limit          string       `json:"limit,omitempty"`
	Capacity       *int64       `json:"capacity,omitempty"`
	Remaining      *int64       `json:"remaining,omitempty"`
	RetryAfterMs   *int64       `json:"retry_after_ms,omitempty"`
	ReleaseAfterMs *int64       `json:"release_after_ms,omitempty"`
	Note           string       `json:"note,omitempty"`
	TTLMs          int64        `json:"ttl_ms"`
	Buckets        []jsonBucket `json:"buckets"`
}

// checkLimitShow checks the key, and --buckets as the limiter checks
// Options.Buckets (--limit is checked when parsed).
func checkLimitShow(c *cli, args []string) error {
	if err := checkKeys("key")(c, args); err != nil {
		return err
	}
	if c.o.buckets < 1 || c.o.buckets > ratelimit.MaxBuckets {
		return usageErr("--buckets %d must be between 1 and %d", c.o.buckets, ratelimit.MaxBuckets)
	}
	if c.set["buckets"] && !c.set["limit"] {
		return usageErr("--buckets needs --limit")
	}
	return nil
}

// geometry is how the library cuts l's period into at most buckets
// buckets (ratelimit's rule: B = ⌈period / buckets⌉ ms, nb = ⌈period / B⌉),
// to tell whether a stored window was written under l.
func geometry(l ratelimit.Limit, buckets int64) (bucketMs, nb int64) {
	p := l.Period.Milliseconds()
	bucketMs = (p + buckets - 1) / buckets
	return bucketMs, (p + bucketMs - 1) / bucketMs
}

func limitShow(ctx context.Context, c *cli, args []string) error {
	key := args[0]
	l, err := inspect.ReadLimit(ctx, c.conn.backend(), c.o.prefix, key)
	if err != nil {
		return err
	}
	w := l.Window()
	j := jsonLimit{Prefix: c.o.prefix, PrefixBase64: b64(c.o.prefix), Key: key, KeyBase64: b64(key), Exists: l.Exists, ServerTime: jsonTime(l.Now),
		WindowMs: l.BucketMs * l.PerWindow, BucketMs: l.BucketMs, Count: w.Count, StoredTotal: l.Stored, TTLMs: ms(l.TTL),
		Buckets: []jsonBucket{}}
	for _, b := range w.Buckets {
		jb := jsonBucket{Count: b.Count, Live: b.Live}
		if !b.Start.IsZero() {
			jb.StartAt = jsonTime(b.Start)
		}
		j.Buckets = append(j.Buckets, jb)
	}
	if l.Exists && l.BucketMs == 0 {
		j.Note = "no geometry stored (written by an older version): the limiter counts the stored total from now"
	}
	if c.set["limit"] {
		// What the library would answer: its own Peek, which consumes nothing.
		rl, err := ratelimit.NewRedis(c.conn.backend(), ratelimit.Options{Prefix: c.o.prefix, Buckets: c.o.buckets})
		if err != nil {
			return usageErr("%v", err)
		}
		defer rl.Close(ctx)
		st, err := rl.Absolute().Peek(ctx, key, c.o.limit)
		if err != nil {
			return err
		}
		if st.Degraded != nil {
			return st.Degraded
		}
		capacity, rem, retry, release := st.Limit, st.Remaining, ms(st.RetryAfter), ms(st.ReleaseAfter)
		j.Limit, j.Capacity, j.Remaining, j.RetryAfterMs, j.ReleaseAfterMs = c.o.limit.String(), &capacity, &rem, &retry, &release
		if B, nb := geometry(c.o.limit, int64(c.o.buckets)); l.BucketMs != 0 && (B != l.BucketMs || nb != l.PerWindow) {
			j.Note = fmt.Sprintf("stored in %d buckets of %dms; --limit %v with --buckets %d cuts %d of %dms: the limiter would re-date the window to now (counted below)",
				l.PerWindow, l.BucketMs, c.o.limit, c.o.buckets, nb, B)
		}
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
		window := "- (no geometry stored)"
		if l.BucketMs != 0 {
			window = fmt.Sprintf("%v in %d buckets of %v", time.Duration(j.WindowMs)*time.Millisecond, l.PerWindow,
				time.Duration(l.BucketMs)*time.Millisecond)
		}
		rows := [][]string{
			{"key:", disp(key)},
			{"prefix:", disp(c.o.prefix)},
			{"window:", window},
			{"count:", fmt.Sprintf("%d in the window now (stored total %d)", w.Count, l.Stored)},
		}
		if j.Limit != "" {
			in := func(d int64, zero string) string {
				if d <= 0 {
					return zero
				}
				return "in " + human(time.Duration(d)*time.Millisecond)
			}
			rows = append(rows,
				[]string{"limit:", fmt.Sprintf("%s (%d per window)", j.Limit, *j.Capacity)},
				[]string{"remaining:", strconv.FormatInt(*j.Remaining, 10)},
				[]string{"next allowed:", in(*j.RetryAfterMs, "now")},
				[]string{"next release:", in(*j.ReleaseAfterMs, "- (empty)")})
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
		if j.Note != "" {
			rows = append(rows, []string{"note:", j.Note})
		}
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
	if ctx, err = c.confirm(ctx, "reset the window of "+disp(key), fmt.Sprintf("stored total %d, prefix %s", l.Stored, disp(c.o.prefix))); err != nil {
		return err
	}
	// The library's own Reset: the same script every provider uses.
	rl, err := ratelimit.NewRedis(c.conn.backend(), ratelimit.Options{Prefix: c.o.prefix})
	if err != nil {
		return usageErr("%v", err)
	}
	defer rl.Close(ctx)
	if err := rl.Reset(ctx, key); err != nil {
		return err
	}
	if c.o.json {
		return c.writeJSON(struct {
			Prefix       string `json:"prefix"`
			PrefixBase64 string `json:"prefix_base64,omitempty"`
			Key          string `json:"key"`
			KeyBase64    string `json:"key_base64,omitempty"`
			Reset        bool   `json:"reset"`
			StoredTotal  int64  `json:"stored_total"`
		}{c.o.prefix, b64(c.o.prefix), key, b64(key), true, l.Stored})
	}
	fmt.Fprintf(c.stdout, "reset the window of %s (stored total was %d)\n", disp(key), l.Stored)
	return nil
}
