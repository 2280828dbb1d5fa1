// Package httplimit is net/http middleware over a distkit rate limiter:
// it keys each request (by default by client IP, an IPv6 client by its
// /64), asks the limiter, and either serves the request or answers 429 Too
// Many Requests with Retry-After, telling clients their quota in the
// RateLimit-Policy and RateLimit fields of the IETF httpapi draft
// "RateLimit header fields for HTTP",
// draft-ietf-httpapi-ratelimit-headers-11 (or the older
// RateLimit-Limit/-Remaining/-Reset trio).
//
//	b := memory.New(memory.Options{}) // or a Redis driver, shared by every instance
//	limiter, err := ratelimit.NewRedis(b, ratelimit.Options{})
//	if err != nil {
//		log.Fatal(err)
//	}
//	perIP, err := httplimit.New(httplimit.Options{
//		Limiter: limiter.Absolute(),
//		Limit:   ratelimit.PerMinute(100),
//		Policy:  "api",
//	})
//	if err != nil {
//		log.Fatal(err)
//	}
//	mux := http.NewServeMux()
//	mux.HandleFunc("GET /items", func(w http.ResponseWriter, r *http.Request) { fmt.Fprintln(w, "items") })
//	log.Fatal(http.ListenAndServe(":8080", perIP.Wrap(mux)))
//
// # Keys
//
// A request's key is Options.Key (default: IPOptions{}.Key, the client IP
// from RemoteAddr): Header keys by a request header (an API key, a user id
// set by authentication middleware), Route by the ServeMux pattern that
// serves the request, Join combines keys (per route and IP). The limiter
// sees Policy + ":" + key, so middlewares with different policies on one
// limiter never share windows. Forwarding headers (X-Forwarded-For,
// Forwarded, X-Real-IP) are read only from peers listed in
// IPOptions.TrustedProxies: from anyone else they are ignored, since a
// client could otherwise pick its own key.
//
// # Responses
//
// An admitted request gets, before the next handler runs,
//
//	RateLimit-Policy: "api";q=100;w=60
//	RateLimit: "api";r=99;t=60
//
// q is the limit (Decision.Limit), w the period in whole seconds (left out
// for a period that is not), r what remains (Decision.Remaining), t the
// seconds until the window next counts less (Decision.ReleaseAfter,
// rounded up): within t the client can use no more than r. q and r are
// capped at 999999999999999, the largest Structured Field Integer. A rejected
// request gets the same fields (r=0), Retry-After in seconds (rounded up)
// and a 429 whose body is an RFC 9457 problem document of the draft's
// "quota-exceeded" type, or what Options.OnLimited writes. With
// LegacyFields the trio RateLimit-Limit: 100, RateLimit-Remaining: 99,
// RateLimit-Reset: 60 (the same numbers) is sent instead or as well. The
// next handler finds the decision with DecisionFrom.
//
// # Degraded decisions
//
// When the limiter's backend fails, the limiter's failure policy
// (ratelimit.Options.OnError) decides and marks the decision Degraded.
// Options.OnDegraded says what the middleware does with it: FollowDecision
// (the default) serves what the limiter admitted; what it refused against
// its local view (ratelimit.FailLocal, which knows when room comes back:
// Decision.RetryAfter > 0) gets 429 with that Retry-After, like any
// refusal; what it refused without knowing (FailClosed) gets 503 Service
// Unavailable (the server's trouble, not the client's quota: a problem
// document of the draft's "temporary-reduced-capacity" type, Retry-After
// 1); ServeDegraded serves every degraded request;
// RefuseDegraded answers 503 to every one. A degraded answer carries
// RateLimit-Policy but no RateLimit (what remains is unknown). Options.
// OnDecision sees every decision, e.g. to log or count degraded ones.
//
// # Errors
//
// A key that cannot be found (ErrNoKey: a missing header, an unparsable
// address) or that the limiter refuses as a key (longer than
// distkit.MaxKeyLen) is the client's: 400. A misconfiguration (a negative
// cost) is 500, a closed limiter 503; a client that went away gets
// nothing. Options.OnError replaces these answers.
package httplimit

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"strconv"
	"time"

	"github.com/distkit-go/distkit"
	"github.com/distkit-go/distkit/primitives/ratelimit"
)

// Limiter decides for the middleware: a *ratelimit.Absolute or a
// *ratelimit.Suppressed of any provider (Local, Redis, Hybrid).
type Limiter interface {
	Inc(ctx context.Context, key string, limit ratelimit.Limit, n int64) (ratelimit.Decision, error)
}

// Fields selects the rate-limit response fields.
type Fields uint8

const (
	// DraftFields: RateLimit-Policy and RateLimit, as in
	// draft-ietf-httpapi-ratelimit-headers-11. The default.
	DraftFields Fields = 1 << iota
	// LegacyFields: RateLimit-Limit, RateLimit-Remaining and
	// RateLimit-Reset (seconds), as earlier drafts and many clients use.
	LegacyFields
	// NoFields: neither; Retry-After is still sent on 429 and 503.
	NoFields
)

// DegradedPolicy is what the middleware does with a degraded decision.
type DegradedPolicy int

const (
	// FollowDecision serves what the limiter's failure policy admitted and
	// answers 503 to what it refused.
	FollowDecision DegradedPolicy = iota
	// ServeDegraded serves every degraded request: the HTTP layer fails
	// open whatever the limiter's policy.
	ServeDegraded
	// RefuseDegraded answers 503 to every degraded request.
	RefuseDegraded
)

// String returns the policy's name.
func (p DegradedPolicy) String() string {
	switch p {
	case FollowDecision:
		return "FollowDecision"
	case ServeDegraded:
		return "ServeDegraded"
	case RefuseDegraded:
		return "RefuseDegraded"
	}
	return fmt.Sprintf("DegradedPolicy(%d)", int(p))
}

// Options configure a Middleware. Limiter and Limit are required.
type Options struct {
	// Limiter decides: a strategy of a ratelimit provider.
	Limiter Limiter
	// Limit is the limit every key gets.
	Limit ratelimit.Limit
	// Policy names the limit in the response fields and namespaces the
	// keys (the limiter sees Policy + ":" + key): 1 to 64 printable ASCII
	// characters other than '"', '\' and ':'; default "default".
	Policy string
	// Key keys a request; default IP.Key (the client IP).
	Key KeyFunc
	// IP configures the default key; ignored when Key is set.
	IP IPOptions
	// Cost is how many units a request takes; default 1. A cost of 0
	// serves the request without asking the limiter (and without fields);
	// a negative cost is an error (OnError).
	Cost func(*http.Request) int64
	// Fields selects the response fields; default DraftFields. Combine
	// with |: DraftFields | LegacyFields.
	Fields Fields
	// OnDegraded: see DegradedPolicy; default FollowDecision.
	OnDegraded DegradedPolicy
	// DegradedRetryAfter is the Retry-After of a 503 for a degraded
	// decision; default 1 s, rounded up to whole seconds.
	DegradedRetryAfter time.Duration
	// OnLimited writes the response to a rejected request, after the
	// fields and Retry-After are set (DecisionFrom has the decision);
	// default a 429 problem document.
	OnLimited http.Handler
	// OnError answers a request the middleware could not decide on: a key
	// error, a negative cost, a closed limiter. Default: 400 for ErrNoKey
	// and invalid keys, nothing for a client that went away, 503 for the
	// rest.
	OnError func(w http.ResponseWriter, r *http.Request, err error)
	// OnDecision, if set, sees every decision (before the response), e.g.
	// to log or count degraded ones.
	OnDecision func(r *http.Request, key string, d ratelimit.Decision)
}

// Middleware limits the requests of an http.Handler. It is safe for
// concurrent use.
type Middleware struct {
	o      Options
	policy string // the RateLimit-Policy field value
}

// New checks opts and returns the middleware. Errors wrap
// distkit.ErrInvalidOption and name the option.
func New(opts Options) (*Middleware, error) {
	o := opts
	switch {
	case o.Limiter == nil:
		return nil, invalid("Limiter is nil")
	case o.Policy == "":
		o.Policy = "default"
	}
	if err := o.Limit.Validate(); err != nil {
		return nil, fmt.Errorf("httplimit: Limit: %w", err)
	}
	if len(o.Policy) > 64 {
		return nil, invalid("Policy %q is longer than 64 characters", o.Policy)
	}
	for i := 0; i < len(o.Policy); i++ {
		if c := o.Policy[i]; c < 0x20 || c > 0x7e || c == '"' || c == '\\' || c == ':' {
			return nil, invalid("Policy %q: byte %#x is not a printable ASCII character other than '\"', '\\' and ':'", o.Policy, c)
		}
	}
	if o.Key == nil {
		if err := o.IP.check(); err != nil {
			return nil, err
		}
		o.Key = o.IP.Key
	}
	if o.Fields == 0 {
		o.Fields = DraftFields
	}
	if o.Fields&^(DraftFields|LegacyFields|NoFields) != 0 || (o.Fields&NoFields != 0 && o.Fields != NoFields) {
		return nil, invalid("Fields %#x: DraftFields and/or LegacyFields, or NoFields alone", uint8(o.Fields))
	}
	switch o.OnDegraded {
	case FollowDecision, ServeDegraded, RefuseDegraded:
	default:
		return nil, invalid("unknown OnDegraded %v", o.OnDegraded)
	}
	switch {
	case o.DegradedRetryAfter == 0:
		o.DegradedRetryAfter = time.Second
	case o.DegradedRetryAfter < 0:
		return nil, invalid("DegradedRetryAfter %v is negative", o.DegradedRetryAfter)
	}
	if o.OnError == nil {
		o.OnError = defaultOnError
	}
	m := &Middleware{o: o, policy: strconv.Quote(o.Policy)}
	if m.o.OnLimited == nil {
		m.o.OnLimited = http.HandlerFunc(m.o.limited)
	}
	return m, nil
}

func invalid(format string, args ...any) error {
	return fmt.Errorf("httplimit: %w: "+format, append([]any{distkit.ErrInvalidOption}, args...)...)
}

type decisionKey struct{}

// DecisionFrom returns the decision the middleware made for the request
// whose context ctx is (in the next handler, or in OnLimited); ok is false
// when it made none (cost 0, or outside the middleware).
func DecisionFrom(ctx context.Context) (d ratelimit.Decision, ok bool) {
	d, ok = ctx.Value(decisionKey{}).(ratelimit.Decision)
	return d, ok
}

// Wrap returns next behind the limit: the middleware's form for routers
// (mux.Use(m.Wrap)).
func (m *Middleware) Wrap(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		m.serve(w, r, next)
	})
}

func (m *Middleware) serve(w http.ResponseWriter, r *http.Request, next http.Handler) {
	o := &m.o
	n := int64(1)
	if o.Cost != nil {
		if n = o.Cost(r); n == 0 {
			next.ServeHTTP(w, r)
			return
		} else if n < 0 {
			o.OnError(w, r, invalid("Cost %d of %s %s is negative", n, r.Method, r.URL.Path))
			return
		}
	}
	key, err := o.Key(r)
	if err != nil {
		o.OnError(w, r, err)
		return
	}
	key = o.Policy + ":" + key
	d, err := o.Limiter.Inc(r.Context(), key, o.Limit, n)
	if err != nil {
		o.OnError(w, r, err)
		return
	}
	if o.OnDecision != nil {
		o.OnDecision(r, key, d)
	}
	r = r.WithContext(context.WithValue(r.Context(), decisionKey{}, d))
	h := w.Header()
	if d.Degraded != nil {
		if o.Fields&DraftFields != 0 {
			h.Set("RateLimit-Policy", m.policyField(d))
		}
		if o.OnDegraded == ServeDegraded || (o.OnDegraded == FollowDecision && d.Allowed) {
			next.ServeHTTP(w, r)
			return
		}
		if o.OnDegraded == FollowDecision && d.RetryAfter > 0 {
			// Refused against the limiter's local view (FailLocal), which
			// knows when room comes back: a quota answer, not an outage.
			h.Set("Retry-After", seconds(d.RetryAfter))
			o.OnLimited.ServeHTTP(w, r)
			return
		}
		h.Set("Retry-After", seconds(o.DegradedRetryAfter))
		writeProblem(w, http.StatusServiceUnavailable, problem{
			Type:   "https://iana.org/assignments/http-problem-types#temporary-reduced-capacity",
			Title:  "Service Unavailable",
			Detail: "the rate limiter cannot decide now; retry later",
			Status: http.StatusServiceUnavailable, Violated: []string{o.Policy}})
		return
	}
	t := d.ReleaseAfter
	if !d.Allowed {
		retry := d.RetryAfter
		if retry <= 0 && n <= d.Limit { // a probabilistic (Suppressed) rejection: come back in a second
			retry = time.Second
		}
		if retry > 0 {
			h.Set("Retry-After", seconds(retry))
			t = retry // the draft: Retry-After not before the end of the effective window
		}
	}
	m.setFields(h, d, t)
	if !d.Allowed {
		o.OnLimited.ServeHTTP(w, r)
		return
	}
	next.ServeHTTP(w, r)
}

// policyField is the RateLimit-Policy value for d.
func (m *Middleware) policyField(d ratelimit.Decision) string {
	q := d.Limit
	if q == 0 { // a degraded decision may not know it
		q = m.o.Limit.N
	}
	v := m.policy + ";q=" + sfInt(q)
	if p := m.o.Limit.Period; p%time.Second == 0 {
		v += ";w=" + strconv.FormatInt(int64(p/time.Second), 10)
	}
	return v
}

// setFields sets the rate-limit fields of an answered decision; t is the
// effective window.
func (m *Middleware) setFields(h http.Header, d ratelimit.Decision, t time.Duration) {
	if m.o.Fields&DraftFields != 0 {
		h.Set("RateLimit-Policy", m.policyField(d))
		v := m.policy + ";r=" + sfInt(d.Remaining)
		if t > 0 {
			v += ";t=" + seconds(t)
		}
		h.Set("RateLimit", v)
	}
	if m.o.Fields&LegacyFields != 0 {
		h.Set("RateLimit-Limit", sfInt(d.Limit))
		h.Set("RateLimit-Remaining", sfInt(d.Remaining))
		h.Set("RateLimit-Reset", seconds(t))
	}
}

// maxSFInt is the largest Integer of RFC 8941 (Structured Field Values),
// the type of the fields' q, w, r and t: 15 decimal digits.
const maxSFInt = 999_999_999_999_999

// sfInt renders a quota or an available quota as a Structured Field
// Integer: one beyond the range (a Limit's N may be up to
// ratelimit.MaxCount, 16 digits) is announced as the largest Integer, a
// lower quota than the limiter's, which the draft allows (a field with a
// longer number would be malformed, and ignored by clients).
func sfInt(v int64) string { return strconv.FormatInt(min(v, maxSFInt), 10) }

// seconds renders d as delay-seconds, rounded up.
func seconds(d time.Duration) string {
	return strconv.FormatInt(int64((d+time.Second-1)/time.Second), 10)
}

// limited is the default OnLimited: a 429 problem document.
func (o *Options) limited(w http.ResponseWriter, r *http.Request) {
	d, _ := DecisionFrom(r.Context())
	detail := fmt.Sprintf("rate limit %v exceeded", o.Limit)
	if ra := w.Header().Get("Retry-After"); ra != "" {
		detail += "; retry in " + ra + " s"
	} else {
		detail += fmt.Sprintf("; this request (cost above %d) never fits", d.Limit)
	}
	writeProblem(w, http.StatusTooManyRequests, problem{
		Type:   "https://iana.org/assignments/http-problem-types#quota-exceeded",
		Title:  "Too Many Requests",
		Detail: detail, Status: http.StatusTooManyRequests, Violated: []string{o.Policy}})
}

// problem is an RFC 9457 problem document.
type problem struct {
	Type     string   `json:"type"`
	Title    string   `json:"title"`
	Status   int      `json:"status"`
	Detail   string   `json:"detail,omitempty"`
	Violated []string `json:"violated-policies,omitempty"`
}

func writeProblem(w http.ResponseWriter, status int, p problem) {
	body, _ := json.Marshal(p)
	h := w.Header()
	h.Set("Content-Type", "application/problem+json")
	h.Set("Content-Length", strconv.Itoa(len(body)+1))
	w.WriteHeader(status)
	w.Write(append(body, '\n'))
}

// defaultOnError is OnError's default.
func defaultOnError(w http.ResponseWriter, r *http.Request, err error) {
	switch {
	case r.Context().Err() != nil: // the client went away
	case errors.Is(err, ErrNoKey), errors.Is(err, distkit.ErrInvalidKey):
		writeProblem(w, http.StatusBadRequest, problem{Type: "about:blank", Title: "Bad Request",
			Status: http.StatusBadRequest, Detail: "the request cannot be attributed to a client for rate limiting"})
	case errors.Is(err, distkit.ErrInvalidOption): // a misconfiguration (a negative cost, bad IPOptions)
		writeProblem(w, http.StatusInternalServerError, problem{Type: "about:blank", Title: "Internal Server Error",
			Status: http.StatusInternalServerError})
	default:
		writeProblem(w, http.StatusServiceUnavailable, problem{Type: "about:blank", Title: "Service Unavailable",
			Status: http.StatusServiceUnavailable})
	}
}
