package parity

import (
	"fmt"
	"math"
	"sort"
	"time"

	"github.com/distkit-go/distkit"
	"github.com/distkit-go/distkit/primitives/ratelimit"
)

// RLCase is one rate-limit fuzz input, decoded: the providers' options,
// a limit and a sequence of operations. FuzzRateLimit runs it on Local,
// Redis on the memory backend and on miniredis, and Hybrid, all on one
// clock; the chaos suite runs its decisions on a real server and replays
// them on Local at the server's timestamps.
type RLCase struct {
	Limit           ratelimit.Limit // may be invalid: every provider must say so
	Buckets         int             // Options.Buckets (0: the default)
	HardLimitFactor float64
	Ops             []RLOp
}

// Alt is the case's other limit, with twice the period: a key used with
// both has what it holds re-dated on every switch.
func (c RLCase) Alt() ratelimit.Limit { return ratelimit.Per(c.Limit.N, 2*c.Limit.Period) }

// RLKind is what an RLOp does.
type RLKind int

// The operations of a fuzz case.
const (
	RLDecide     RLKind = iota // Inc
	RLPeek                     // Peek
	RLSetKeep                  // SetIf, KeepHistory
	RLSetReplace               // SetIf, ReplaceHistory
	RLReset                    // Reset
)

// RLOp is one operation of an RLCase, made after the clock advanced.
type RLOp struct {
	Advance time.Duration
	Kind    RLKind
	Key     string // "a" or "b"
	Sup     bool   // Suppressed, else Absolute (Decide, Peek)
	Alt     bool   // under the case's Alt limit
	// N is the amount (Decide) or the value (SetIf); when Rel is set it is
	// relative to the limit of the previous decision (Resolve), to reach
	// the edges of any capacity.
	N   int64
	Rel bool
	Cmp distkit.Comparator // SetIf
}

// rlSpecial are amounts the fuzzer picks besides small ones.
var rlSpecial = []int64{math.MaxInt64, math.MaxInt64 - 1, ratelimit.MaxCount, ratelimit.MaxCount + 1,
	1 << 53, 1e17, 1 << 40, 1000}

// rlOperands are comparator operands the fuzzer picks besides small ones.
var rlOperands = []int64{math.MinInt64, math.MaxInt64, -1, ratelimit.MaxCount, ratelimit.MaxCount + 1}

// DecodeRL turns fuzzer bytes into a case: the limit's N as given (any
// int64, valid or not), its period 1..6000 ms, 0..24 buckets per period,
// factor 1..4.9, and 4 bytes per operation (advance, amount, kind and key,
// comparator).
func DecodeRL(n uint64, periodMs uint32, buckets, hlf uint8, seq []byte) RLCase {
	c := RLCase{Limit: ratelimit.Per(int64(n), time.Duration(periodMs%6000+1)*time.Millisecond),
		Buckets: int(buckets % 25), HardLimitFactor: 1 + float64(hlf%40)/10}
	// The bucket as the providers cut it (whole milliseconds): advances stay
	// on whole milliseconds, where Local (exact to the nanosecond: a request
	// within a millisecond counts from the next one) and the scripts (whole
	// server milliseconds) count alike.
	nb := int64(c.Buckets)
	if nb == 0 {
		nb = ratelimit.DefaultBuckets
	}
	p := c.Limit.Period.Milliseconds()
	bucket := time.Duration((p+nb-1)/nb) * time.Millisecond
	for i := 0; i+3 < len(seq) && len(c.Ops) < 96; i += 4 {
		a, b, f, x := seq[i], seq[i+1], seq[i+2], seq[i+3]
		op := RLOp{Key: "a", Sup: f&2 != 0, Alt: f&32 != 0}
		if f&1 != 0 {
			op.Key = "b"
		}
		switch k := (f >> 2) & 7; {
		case k < 4:
			op.Kind = RLDecide
		case k == 4:
			op.Kind = RLPeek
		case k == 5:
			op.Kind = RLSetKeep
		case k == 6:
			op.Kind = RLSetReplace
		default:
			op.Kind = RLReset
		}
		switch {
		case a < 200:
			op.Advance = time.Duration(a) * time.Millisecond
		case a < 240:
			op.Advance = time.Duration(a-200) * bucket
		default:
			op.Advance = time.Duration(a-240) * c.Limit.Period
		}
		switch {
		case b < 192:
			op.N = int64(b%8) + 1
			if op.Kind == RLSetKeep || op.Kind == RLSetReplace {
				op.N = int64(b % 8) // values may be 0
			}
		case b < 224:
			op.N, op.Rel = int64(b%3)-1, true // limit − 1, limit, limit + 1
		default:
			op.N = rlSpecial[int(b)%len(rlSpecial)]
		}
		operand := int64(x>>3) % 8
		if x >= 216 {
			operand = rlOperands[int(x)%len(rlOperands)]
		}
		op.Cmp = distkit.Comparator{Op: distkit.Op(x % 7), Operand: operand}
		c.Ops = append(c.Ops, op)
	}
	return c
}

// Options are the providers' options for c (their clock, prefix and sync
// interval are the caller's).
func (c RLCase) Options() ratelimit.Options {
	return ratelimit.Options{Buckets: c.Buckets, HardLimitFactor: c.HardLimitFactor, SuppressionCache: time.Nanosecond}
}

// LimitOf is op's limit in c.
func (c RLCase) LimitOf(op RLOp) ratelimit.Limit {
	if op.Alt {
		return c.Alt()
	}
	return c.Limit
}

// Resolve returns op's amount given the limit of the previous decision
// (0 before any).
func (op RLOp) Resolve(lastLimit int64) int64 {
	if !op.Rel {
		return op.N
	}
	return max(1, lastLimit+op.N)
}

// RLResult is an operation's outcome as the providers must agree on it.
type RLResult struct {
	Err          string
	Allowed      bool
	Random       bool // Suppressed admitted with probability 1 − s: Allowed may differ
	Limit        int64
	Count        int64 // Peek; SetIf's count after
	Prev         int64 // SetIf's count before
	Remaining    int64
	RetryAfter   time.Duration
	ReleaseAfter time.Duration
	Suppression  float64
}

// RenderRL renders a decision; a degraded one is an error here (the fuzz
// backends never fail).
func RenderRL(d ratelimit.Decision, err error) RLResult {
	if err == nil && d.Degraded != nil {
		err = fmt.Errorf("degraded: %w", d.Degraded)
	}
	if err != nil {
		return RLResult{Err: Outcome(nil, err)}
	}
	return RLResult{Allowed: d.Allowed, Random: d.Suppression > 0 && d.Suppression < 1, Limit: d.Limit,
		Remaining: d.Remaining, RetryAfter: d.RetryAfter, ReleaseAfter: d.ReleaseAfter, Suppression: d.Suppression}
}

// RenderRLState renders a Peek; a degraded one is an error here.
func RenderRLState(st ratelimit.State, err error) RLResult {
	if err == nil && st.Degraded != nil {
		err = fmt.Errorf("degraded: %w", st.Degraded)
	}
	if err != nil {
		return RLResult{Err: Outcome(nil, err)}
	}
	return RLResult{Limit: st.Limit, Count: st.Count, Remaining: st.Remaining, RetryAfter: st.RetryAfter,
		ReleaseAfter: st.ReleaseAfter, Suppression: st.Suppression}
}

// RenderRLSet renders a SetIf or (cur = prev = 0) a Reset.
func RenderRLSet(cur, prev int64, err error) RLResult {
	if err != nil {
		return RLResult{Err: Outcome(nil, err)}
	}
	return RLResult{Count: cur, Prev: prev}
}

// Same reports how a and b differ, ignoring who a random admission went
// to; retry false skips RetryAfter and ReleaseAfter.
func (a RLResult) Same(b RLResult, retry bool) error {
	x, y := a, b
	if x.Random && y.Random {
		x.Allowed, y.Allowed = false, false
	}
	if !retry {
		x.RetryAfter, y.RetryAfter = 0, 0
		x.ReleaseAfter, y.ReleaseAfter = 0, 0
	}
	if x != y {
		return fmt.Errorf("%+v vs %+v", a, b)
	}
	return nil
}

// Admission is one admitted request: when (the decision's time) and how
// many units.
type Admission struct {
	At time.Time
	N  int64
}

// CheckRLBound checks the exact-window bound on one key's admissions:
// no interval (t − window, t] holds more than limit units.
func CheckRLBound(adm []Admission, window time.Duration, limit int64) error {
	s := append([]Admission(nil), adm...)
	sort.SliceStable(s, func(i, j int) bool { return s[i].At.Before(s[j].At) })
	lo, sum := 0, int64(0)
	for hi := range s {
		sum += s[hi].N
		for !s[lo].At.After(s[hi].At.Add(-window)) {
			sum -= s[lo].N
			lo++
		}
		if sum > limit {
			return fmt.Errorf("%d units admitted in the %v ending at %v, limit %d", sum, window, s[hi].At, limit)
		}
	}
	return nil
}
