package distkit_test

import (
	"errors"
	"fmt"
	"math"
	"strings"
	"testing"

	"github.com/distkit-go/distkit"
)

func TestValidateKey(t *testing.T) {
	for _, tc := range []struct {
		key  string
		rule string // "" means valid
	}{
		{"orders", ""},
		{"a", ""},
		{strings.Repeat("k", 255), ""},
		{"ünïcode-ok", ""},
		{"", "empty"},
		{strings.Repeat("k", 256), "longer than 255"},
		{"a:b", "':'"},
		{"a{b", "hash-tag"},
		{"a}b", "hash-tag"},
		{"a\x00b", "control character 0x00"},
		{"tab\tkey", "control character 0x09"},
		{"del\x7f", "control character 0x7f"},
	} {
		err := distkit.ValidateKey("key", tc.key)
		if tc.rule == "" {
			if err != nil {
				t.Errorf("ValidateKey(%q) = %v, want nil", tc.key, err)
			}
			continue
		}
		if !errors.Is(err, distkit.ErrInvalidKey) || !strings.Contains(err.Error(), tc.rule) {
			t.Errorf("ValidateKey(%.20q) = %v, want ErrInvalidKey naming %q", tc.key, err, tc.rule)
		}
	}
}

func TestSanitizeKey(t *testing.T) {
	for in, want := range map[string]string{
		"user:{42}\n":             "user42",
		"clean":                   "clean",
		":{}":                     "",
		strings.Repeat("é", 200):  strings.Repeat("é", 127), // 254 bytes: the next rune would split at 255
		strings.Repeat("ab", 200): strings.Repeat("ab", 200)[:255],
	} {
		got := distkit.SanitizeKey(in)
		if got != want {
			t.Errorf("SanitizeKey(%.20q) = %.20q (%d bytes), want %.20q (%d bytes)", in, got, len(got), want, len(want))
		}
		if got != "" {
			if err := distkit.ValidateKey("key", got); err != nil {
				t.Errorf("sanitized key invalid: %v", err)
			}
		}
	}
}

func TestPrefixOrDefault(t *testing.T) {
	if p, err := distkit.PrefixOrDefault(""); p != distkit.DefaultPrefix || err != nil {
		t.Fatalf("empty prefix: %q, %v", p, err)
	}
	if _, err := distkit.PrefixOrDefault("a:b"); !errors.Is(err, distkit.ErrInvalidKey) {
		t.Fatalf("bad prefix: %v", err)
	}
}

func TestComparator(t *testing.T) {
	values := []int64{math.MinInt64, -1, 0, 4, 5, 6, math.MaxInt64}
	for _, tc := range []struct {
		c    distkit.Comparator
		want func(v int64) bool
	}{
		{distkit.Eq(5), func(v int64) bool { return v == 5 }},
		{distkit.Ne(5), func(v int64) bool { return v != 5 }},
		{distkit.Lt(5), func(v int64) bool { return v < 5 }},
		{distkit.Gt(5), func(v int64) bool { return v > 5 }},
		{distkit.Le(5), func(v int64) bool { return v <= 5 }},
		{distkit.Ge(5), func(v int64) bool { return v >= 5 }},
		{distkit.Always(), func(int64) bool { return true }},
		{distkit.Comparator{}, func(int64) bool { return true }},
	} {
		for _, v := range values {
			if got := tc.c.Matches(v); got != tc.want(v) {
				t.Errorf("%v.Matches(%d) = %v", tc.c, v, got)
			}
		}
		if err := tc.c.Validate(); err != nil {
			t.Errorf("%v.Validate() = %v", tc.c, err)
		}
	}
	bad := distkit.Comparator{Op: 42}
	if bad.Matches(0) || !errors.Is(bad.Validate(), distkit.ErrInvalidOption) {
		t.Errorf("unknown op: Matches %v, Validate %v", bad.Matches(0), bad.Validate())
	}
	if s := distkit.Ge(-3).String(); s != "ge -3" {
		t.Errorf("String = %q", s)
	}
}

func TestRetriesError(t *testing.T) {
	cause := errors.New("busy")
	var err error = fmt.Errorf("lock: %w", &distkit.RetriesError{Attempts: 3, Last: cause})
	var re *distkit.RetriesError
	if !errors.Is(err, distkit.ErrRetriesExhausted) || !errors.As(err, &re) || re.Attempts != 3 || !errors.Is(err, cause) {
		t.Fatalf("RetriesError matching: %v", err)
	}
	if errors.Is(err, distkit.ErrTimeout) {
		t.Fatal("RetriesError matches ErrTimeout")
	}
}
