package distkit

import (
	"fmt"
	"strconv"
)

// Op is a comparison operator.
type Op uint8

// The comparison operators. OpAlways matches any value.
const (
	OpAlways Op = iota
	OpEq
	OpNe
	OpLt
	OpGt
	OpLe
	OpGe
)

var opNames = [...]string{"always", "eq", "ne", "lt", "gt", "le", "ge"}

// String returns the operator's short name ("eq", "lt", …), which is also
// what scripts receive.
func (o Op) String() string {
	if int(o) < len(opNames) {
		return opNames[o]
	}
	return "op(" + strconv.Itoa(int(o)) + ")"
}

// Comparator is a condition on a counter's current value, used by the
// conditional operations (IncIf, SetIf, …). The zero Comparator is Always().
type Comparator struct {
	Op      Op
	Operand int64
}

// Eq matches a current value equal to n.
func Eq(n int64) Comparator { return Comparator{OpEq, n} }

// Ne matches a current value different from n.
func Ne(n int64) Comparator { return Comparator{OpNe, n} }

// Lt matches a current value less than n.
func Lt(n int64) Comparator { return Comparator{OpLt, n} }

// Gt matches a current value greater than n.
func Gt(n int64) Comparator { return Comparator{OpGt, n} }

// Le matches a current value less than or equal to n.
func Le(n int64) Comparator { return Comparator{OpLe, n} }

// Ge matches a current value greater than or equal to n.
func Ge(n int64) Comparator { return Comparator{OpGe, n} }

// Always matches any value; it is also the zero Comparator.
func Always() Comparator { return Comparator{} }

// Matches reports whether current satisfies c.
func (c Comparator) Matches(current int64) bool {
	switch c.Op {
	case OpAlways:
		return true
	case OpEq:
		return current == c.Operand
	case OpNe:
		return current != c.Operand
	case OpLt:
		return current < c.Operand
	case OpGt:
		return current > c.Operand
	case OpLe:
		return current <= c.Operand
	case OpGe:
		return current >= c.Operand
	}
	return false
}

// Validate returns an error wrapping ErrInvalidOption for an unknown Op.
func (c Comparator) Validate() error {
	if c.Op > OpGe {
		return fmt.Errorf("%w: unknown comparator op %d", ErrInvalidOption, c.Op)
	}
	return nil
}

// String renders c as "ge 5" or "always".
func (c Comparator) String() string {
	if c.Op == OpAlways {
		return "always"
	}
	return c.Op.String() + " " + strconv.FormatInt(c.Operand, 10)
}
