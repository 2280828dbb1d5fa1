package backend

import (
	"fmt"
	"strconv"
	"strings"
)

// Value is the result of a script: Nil, an integer, a string or an array of
// Values, following Redis's conversion of Lua values (nil and false become
// Nil, true becomes Int(1), numbers are truncated to integers).
// The zero Value is Nil.
type Value struct {
	v any // nil | int64 | string | []Value
}

// Nil returns the nil Value.
func Nil() Value { return Value{} }

// Int returns an integer Value.
func Int(n int64) Value { return Value{v: n} }

// Str returns a string Value.
func Str(s string) Value { return Value{v: s} }

// Arr returns an array Value.
func Arr(vs ...Value) Value {
	if vs == nil {
		vs = []Value{}
	}
	return Value{v: vs}
}

// Bool returns Int(1) for true and Nil for false, as Redis converts Lua booleans.
func Bool(b bool) Value {
	if b {
		return Int(1)
	}
	return Nil()
}

// IsNil reports whether v is Nil.
func (v Value) IsNil() bool { return v.v == nil }

// Int64 returns v as an integer. Strings holding a decimal integer convert;
// anything else is an error.
func (v Value) Int64() (int64, error) {
	switch x := v.v.(type) {
	case int64:
		return x, nil
	case string:
		n, err := strconv.ParseInt(x, 10, 64)
		if err != nil {
			return 0, fmt.Errorf("distkit: value %q is not an int64", x)
		}
		return n, nil
	}
	return 0, fmt.Errorf("distkit: value %s is not an integer", v)
}

// Text returns v as a string; integers are formatted in decimal.
func (v Value) Text() (string, error) {
	switch x := v.v.(type) {
	case string:
		return x, nil
	case int64:
		return strconv.FormatInt(x, 10), nil
	}
	return "", fmt.Errorf("distkit: value %s is not a string", v)
}

// Array returns the elements of an array Value.
func (v Value) Array() ([]Value, error) {
	if x, ok := v.v.([]Value); ok {
		return x, nil
	}
	return nil, fmt.Errorf("distkit: value %s is not an array", v)
}

// Int64s returns an array Value whose elements are all integers (or
// integer strings) as a slice.
func (v Value) Int64s() ([]int64, error) {
	arr, err := v.Array()
	if err != nil {
		return nil, err
	}
	out := make([]int64, len(arr))
	for i, e := range arr {
		if out[i], err = e.Int64(); err != nil {
			return nil, err
		}
	}
	return out, nil
}

// Equal reports whether v and o are the same Value, kind included.
func (v Value) Equal(o Value) bool {
	switch x := v.v.(type) {
	case nil:
		return o.v == nil
	case int64:
		y, ok := o.v.(int64)
		return ok && x == y
	case string:
		y, ok := o.v.(string)
		return ok && x == y
	case []Value:
		y, ok := o.v.([]Value)
		if !ok || len(x) != len(y) {
			return false
		}
		for i := range x {
			if !x[i].Equal(y[i]) {
				return false
			}
		}
		return true
	}
	return false
}

// String renders v unambiguously for messages and test diffs:
// nil, 42, "text", [1 "a" nil].
func (v Value) String() string {
	switch x := v.v.(type) {
	case nil:
		return "nil"
	case int64:
		return strconv.FormatInt(x, 10)
	case string:
		return strconv.Quote(x)
	case []Value:
		parts := make([]string, len(x))
		for i, e := range x {
			parts[i] = e.String()
		}
		return "[" + strings.Join(parts, " ") + "]"
	}
	return "?"
}
