package main

import (
	"bufio"
	"context"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"io"
	"net/url"
	"strconv"
	"strings"
	"text/tabwriter"
	"time"
	"unicode"
	"unicode/utf8"
)

// writeJSON prints v as one indented JSON document.
func (c *cli) writeJSON(v any) error {
	enc := json.NewEncoder(c.stdout)
	enc.SetEscapeHTML(false)
	enc.SetIndent("", "  ")
	return enc.Encode(v)
}

// table prints rows aligned in columns; the first row is the header.
func (c *cli) table(rows [][]string) {
	tw := tabwriter.NewWriter(c.stdout, 0, 0, 2, ' ', 0)
	for _, r := range rows {
		fmt.Fprintln(tw, strings.TrimRight(strings.Join(r, "\t"), "\t"))
	}
	tw.Flush()
}

// disp renders a user's string (a key, name, owner or instance id) for a
// table: as it is when it is printable UTF-8 without spaces, else quoted
// Go-style ("a b", "\x00\xff"), so every byte stays visible and columns stay
// aligned.
func disp(s string) string {
	if s == "" || !utf8.ValidString(s) || strings.IndexFunc(s, func(r rune) bool {
		return !unicode.IsPrint(r) || unicode.IsSpace(r) || r == '"'
	}) >= 0 {
		return strconv.Quote(s)
	}
	return s
}

// b64 is the value of a *_base64 JSON field: the string's bytes in
// standard base64 when it is not valid UTF-8 (JSON strings cannot carry
// such bytes), else empty (the field is omitted).
func b64(s string) string {
	if utf8.ValidString(s) {
		return ""
	}
	return base64.StdEncoding.EncodeToString([]byte(s))
}

// jsonTime is the JSON form of a time: RFC 3339 in UTC, milliseconds.
func jsonTime(t time.Time) string {
	if t.IsZero() {
		return ""
	}
	return t.UTC().Format("2006-01-02T15:04:05.000Z07:00")
}

// ms is a duration in whole milliseconds.
func ms(d time.Duration) int64 { return d.Milliseconds() }

// human renders a duration for people: 140ms, 28.8s, 1h2m3s.
func human(d time.Duration) string {
	switch {
	case d < 0:
		return "-" + human(-d)
	case d < time.Second:
		return d.Round(time.Millisecond).String()
	case d < time.Minute:
		return d.Round(100 * time.Millisecond).String()
	}
	return d.Round(time.Second).String()
}

// when renders t relative to now: "in 28.8s" or "3.2s ago".
func when(t, now time.Time) string {
	if d := t.Sub(now); d >= 0 {
		return "in " + human(d)
	} else {
		return human(-d) + " ago"
	}
}

// stamp renders t for a table: UTC time and how long ago (or ahead).
func stamp(t, now time.Time) string {
	if t.IsZero() {
		return "-"
	}
	return t.UTC().Format("2006-01-02T15:04:05.000Z") + " (" + when(t, now) + ")"
}

// redactURL hides a password in a URL for messages.
func redactURL(s string) string {
	u, err := url.Parse(s)
	if err != nil {
		return "(unparsable URL)"
	}
	return u.Redacted()
}

// readLine reads one line from r.
func readLine(r io.Reader) string {
	line, _ := bufio.NewReader(r).ReadString('\n')
	return strings.TrimSpace(line)
}

// confirm asks "<action> (<detail>)? [y/N]" on stderr and reads the
// answer from stdin, unless --yes. Without a terminal to ask on it refuses
// (exit 2): a script must say --yes. Anything but "y" or "yes" declines
// (exit 2, nothing changed). --timeout bounds the work with the backend,
// not the operator's reading: after an answer given on the terminal, the
// change gets a fresh --timeout, in the context confirm returns.
func (c *cli) confirm(ctx context.Context, action, detail string) (context.Context, error) {
	if c.o.yes {
		return ctx, nil
	}
	if !c.stdinTTY {
		return ctx, usageErr("refusing to %s without --yes: stdin is not a terminal to ask on", action)
	}
	fmt.Fprintf(c.stderr, "%s (%s)? [y/N] ", action, detail)
	switch strings.ToLower(readLine(c.stdin)) {
	case "y", "yes":
		return c.withTimeout(), nil
	}
	return ctx, usageErr("not confirmed: nothing changed")
}

// withTimeout returns a context for backend work bounded by --timeout from
// now; its cancel runs when the command ends.
func (c *cli) withTimeout() context.Context {
	ctx, cancel := context.WithTimeout(c.base, c.o.timeout)
	c.cancels = append(c.cancels, cancel)
	return ctx
}
