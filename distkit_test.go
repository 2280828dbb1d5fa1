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
		{strings.Repeat("k", distkit.MaxKeyLen), ""},
		{"ünïcode-ok", ""},
		{"user:42", ""},
		{"2001:db8::1", ""},
		{"a{b}c", ""},
		{"50%", ""},
		{"a\x00b\n\x7f", ""},
		{"\xff\xfe not utf-8", ""},
		{" ", ""},
		{"", "empty"},
		{strings.Repeat("k", distkit.MaxKeyLen+1), "1025 bytes, longer than 1024"},
	} {
		err := distkit.ValidateKey("key", tc.key)
		if tc.rule == "" {
			if err != nil {
				t.Errorf("ValidateKey(%.20q) = %v, want nil", tc.key, err)
			}
			continue
		}
		if !errors.Is(err, distkit.ErrInvalidKey) || !strings.Contains(err.Error(), tc.rule) {
			t.Errorf("ValidateKey(%.20q) = %v, want ErrInvalidKey naming %q", tc.key, err, tc.rule)
		}
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
