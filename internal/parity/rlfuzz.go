package parity

import (
	"fmt"
	"math"
	"sort"
	"time"

	"github.com/distkit-go/distkit/primitives/ratelimit"
)

// RLCase is one rate-limit fuzz input, decoded: the providers' options and
// a sequence of requests. FuzzRateLimit runs it on Local, Redis on the
// memory backend and on miniredis, and Hybrid, all on one clock; the chaos
// suite runs it on a real server and replays it on Local at the server's
// timestamps.
type RLCase struct {
	Rate            float64
	Window, Bucket  time.Duration
	HardLimitFactor float64
	Ops             []RLOp
}

// RLOp is one request of an RLCase, made after the clock advanced.
type RLOp struct {
	Advance time.Duration
	Key     string // "a" or "b"
	Sup     bool   // Suppressed, else Absolute
	// N is the amount; when Rel is set it is relative to the limit of the
	// previous decision (Resolve), to reach the edges of any capacity.
	N   int64
	Rel bool
}

// rlSpecial are amounts the fuzzer picks besides small ones.
var rlSpecial = []int64{math.MaxInt64, math.MaxInt64 - 1, ratelimit.MaxCount, ratelimit.MaxCount + 1,
	1 << 53, 1e17, 1 << 40, 1000}

// DecodeRL turns fuzzer bytes into a case: bucket 1..250 ms, 1..24
// buckets per window, factor 1..4.9, and 4 bytes per request (advance,
// amount, strategy and key, spare).
func DecodeRL(rate float64, nb uint8, bucketMs uint16, hlf uint8, seq []byte) RLCase {
	c := RLCase{Rate: rate, Bucket: time.Duration(bucketMs%250+1) * time.Millisecond, HardLimitFactor: 1 + float64(hlf%40)/10}
	c.Window = time.Duration(nb%24+1) * c.Bucket
	for i := 0; i+3 < len(seq) && len(c.Ops) < 96; i += 4 {
		a, b, f := seq[i], seq[i+1], seq[i+2]
		op := RLOp{Key: "a", Sup: f&2 != 0}
		if f&1 != 0 {
			op.Key = "b"
		}
		switch {
		case a < 200:
			op.Advance = time.Duration(a) * time.Millisecond
		case a < 240:
			op.Advance = time.Duration(a-200) * c.Bucket
		default:
			op.Advance = time.Duration(a-240) * c.Window
		}
		switch {
		case b < 192:
			op.N = int64(b%8) + 1
		case b < 224:
			op.N, op.Rel = int64(b%3)-1, true // limit − 1, limit, limit + 1
		default:
			op.N = rlSpecial[int(b)%len(rlSpecial)]
		}
		c.Ops = append(c.Ops, op)
	}
	return c
}

// Options are the providers' options for c (their clock, prefix and sync
// interval are the caller's).
func (c RLCase) Options() ratelimit.Options {
	return ratelimit.Options{Window: c.Window, Bucket: c.Bucket, HardLimitFactor: c.HardLimitFactor, SuppressionCache: time.Nanosecond}
}

// Resolve returns op's amount given the limit of the previous decision
// (0 before any).
func (op RLOp) Resolve(lastLimit int64) int64 {
	if !op.Rel {
		return op.N
	}
	return max(1, lastLimit+op.N)
}

// RLResult is a decision as the providers must agree on it.
type RLResult struct {
	Err         string
	Allowed     bool
	Random      bool // Suppressed admitted with probability 1 − s: Allowed may differ
	Limit       int64
	Remaining   int64
	RetryAfter  time.Duration
	Suppression float64
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
		Remaining: d.Remaining, RetryAfter: d.RetryAfter, Suppression: d.Suppression}
}

// Same reports how a and b differ, ignoring who a random admission went
// to; retry false skips RetryAfter.
func (a RLResult) Same(b RLResult, retry bool) error {
	x, y := a, b
	if x.Random && y.Random {
		x.Allowed, y.Allowed = false, false
	}
	if !retry {
		x.RetryAfter, y.RetryAfter = 0, 0
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
