// Package rueidis is the distkit backend over github.com/redis/rueidis, for
// every topology rueidis serves: a standalone server, Redis Cluster
// (detected by rueidis itself) and Redis Sentinel (ClientOption.Sentinel).
// Import it under the name rueidisbackend, next to the client package it
// wraps:
//
//	import (
//		"github.com/redis/rueidis"
//
//		rueidisbackend "github.com/distkit-go/distkit/backend/rueidis"
//	)
//
//	client, err := rueidis.NewClient(rueidis.ClientOption{InitAddress: []string{"127.0.0.1:6379"}})
//	if err != nil {
//		log.Fatal(err)
//	}
//	defer client.Close()
//	b, err := rueidisbackend.New(client) // b.Close does not close client
//	if err != nil {
//		log.Fatal(err)
//	}
//	defer b.Close()
//	c, err := counter.NewStrict(b, counter.Options{Prefix: "shop"})
//
// Scripts run with EVALSHA and fall back to EVAL when the server answers
// NOSCRIPT; batches go out with DoMulti (one pipeline per node).
//
// # Outcomes
//
// distkit reports success only for exactly one execution of a script,
// ErrNotApplied only when the server certainly did not run it, and
// ErrIndeterminate otherwise. New uses your client as it is and adds
// nothing to it. rueidis (v1.0.79) re-sends a command only when it is
// marked retryable (read-only commands; distkit's scripts are not), after a
// MOVED or ASK redirect (the server did not run it), and after a connection
// reached ClientOption.ConnLifetime (it then re-sends even commands whose
// reply was pending, which may run a script twice): New refuses a client
// built with ConnLifetime. rueidis answers ErrClosing both to commands it
// never wrote (client closed before the call) and to commands already
// written when a connection closes (your Close with calls in flight, a
// Cluster node removed, a Sentinel master switch); distkit cannot tell them
// apart, so ErrClosing is ErrIndeterminate (and ErrClosed), and only a call
// on a backend already closed is ErrNotApplied.
//
// Deadlines: rueidis honours a call's context except while it dials and
// handshakes a new connection, which is bounded by ClientOption.Dialer.Timeout
// (5 s by default) instead; lower it if calls must end near their deadline
// when a server stops answering.
package rueidis

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/url"
	"reflect"
	"strconv"
	"sync"
	"sync/atomic"
	"time"
	"unsafe"

	rd "github.com/redis/rueidis"

	"github.com/distkit-go/distkit/backend"
	"github.com/distkit-go/distkit/backend/driver"
)

// Backend is the rueidis backend. It is safe for concurrent use.
type Backend struct {
	c       rd.Client
	owned   bool
	closed  atomic.Bool
	stopped *uint32 // rueidis's own "closed" flag of c, when found (see stopFlag)
	fanOnce sync.Once
	fan     *driver.Fanout
	subCtx  context.Context // ends every subscription goroutine on Close
	subStop context.CancelFunc
	subs    sync.WaitGroup
}

var (
	_ backend.Backend    = (*Backend)(nil)
	_ backend.Notifier   = (*Backend)(nil)
	_ backend.Replicator = (*Backend)(nil)
)

// New returns a backend over client, used as it is. A nil client (also a
// typed nil pointer, or a wrapper of a nil client whose B panics) and a
// client built with ClientOption.ConnLifetime (which re-sends commands in
// flight), also behind a wrapper that holds it in a field, are refused with
// an error wrapping backend.ErrInvalidOption. Close does not close client.
func New(client rd.Client) (*Backend, error) {
	if client == nil {
		return nil, fmt.Errorf("rueidis: %w: nil client", backend.ErrInvalidOption)
	}
	if v := reflect.ValueOf(client); v.Kind() == reflect.Pointer && v.IsNil() {
		return nil, fmt.Errorf("rueidis: %w: nil client", backend.ErrInvalidOption)
	}
	if err := usableBuilder(client); err != nil {
		return nil, err
	}
	if connLifetime(client) {
		return nil, fmt.Errorf("rueidis: %w: ClientOption.ConnLifetime is set: rueidis re-sends commands in flight when a connection expires, which can run a script twice; build the client without it",
			backend.ErrInvalidOption)
	}
	return &Backend{c: client, stopped: stopFlag(reflect.ValueOf(client), 0)}, nil
}

// stopFlag finds the flag rueidis sets when a client is closed (the
// unexported stop field of its client types in the pinned version, also
// behind wrappers that hold the client in a field), so that a call on a
// client the user already closed is reported ErrNotApplied and ErrClosed
// without being sent: rueidis itself answers ErrClosing both then and to
// calls cut by a failover, which may have run. nil when not found; a test
// pins the detection.
func stopFlag(v reflect.Value, depth int) *uint32 {
	for v.Kind() == reflect.Interface || v.Kind() == reflect.Pointer {
		if v.IsNil() {
			return nil
		}
		v = v.Elem()
	}
	if v.Kind() != reflect.Struct || depth > 8 || !v.CanAddr() {
		return nil
	}
	if f := v.FieldByName("stop"); f.IsValid() && f.Kind() == reflect.Uint32 {
		return (*uint32)(unsafe.Pointer(f.UnsafeAddr()))
	}
	for i := 0; i < v.NumField(); i++ {
		f := v.Field(i)
		if f.Type() == clientType || f.Type().Implements(clientType) {
			if p := stopFlag(f, depth+1); p != nil {
				return p
			}
		}
	}
	return nil
}

// usableBuilder refuses a client whose B panics: a wrapper (a hook, an
// instrumentation layer) of a nil client is a nil client all the same, and
// would otherwise panic on first use, in distkit's subscription goroutine
// too. B does no I/O.
func usableBuilder(c rd.Client) (err error) {
	defer func() {
		if r := recover(); r != nil {
			err = fmt.Errorf("rueidis: %w: unusable client %T (B panics: %v): a wrapper of a nil client?", backend.ErrInvalidOption, c, r)
		}
	}()
	c.B()
	return nil
}

// connLifetime reports whether one of rueidis's own client types was built
// with ConnLifetime, also behind wrappers (hooks, instrumentation) that
// hold the client in a field. rueidis does not expose its options, so this
// reads the unexported fields that record it (hasLftm, opt.ConnLifetime) of
// the client types of the pinned version; a test pins the detection.
func connLifetime(c rd.Client) bool { return lifetimeIn(reflect.ValueOf(c), 0) }

var clientType = reflect.TypeOf((*rd.Client)(nil)).Elem()

func lifetimeIn(v reflect.Value, depth int) bool {
	for v.Kind() == reflect.Interface || v.Kind() == reflect.Pointer {
		if v.IsNil() {
			return false
		}
		v = v.Elem()
	}
	if v.Kind() != reflect.Struct || depth > 8 {
		return false
	}
	if f := v.FieldByName("hasLftm"); f.IsValid() && f.Kind() == reflect.Bool {
		return f.Bool()
	}
	for _, name := range []string{"opt", "mOpt"} {
		f := v.FieldByName(name)
		if !f.IsValid() || f.Kind() != reflect.Pointer || f.IsNil() || f.Elem().Kind() != reflect.Struct {
			continue
		}
		if lt := f.Elem().FieldByName("ConnLifetime"); lt.IsValid() && lt.Kind() == reflect.Int64 {
			return lt.Int() > 0
		}
	}
	// A wrapper: the clients it holds.
	for i := 0; i < v.NumField(); i++ {
		f := v.Field(i)
		if (f.Type() == clientType || f.Type().Implements(clientType)) && lifetimeIn(f, depth+1) {
			return true
		}
	}
	return false
}

// FromURL builds a client from a URL and returns a backend that owns it
// (Close closes it). The forms (see rueidis.ParseURL for other parameters):
//
//	redis://[user:pass@]host:port[/db]                    standalone (or a Cluster node)
//	redis://host:port?addr=host2:port2&addr=host3:port3   Cluster (seed nodes)
//	redis://[user:pass@]sentinel1:26379[/db]?addr=sentinel2:26379&master_set=mymaster
//	                                                      Sentinel (the hosts are
//	                                                      Sentinels; master_name is an alias)
//
// rediss:// enables TLS.
//
// The client gets ClientOption.MaxFlushDelay = DefaultMaxFlushDelay (20 µs)
// unless the URL sets max_flush_delay (a Go duration from 0, which turns it
// off, to MaxFlushDelayLimit; given once):
// after each write of pipelined commands, rueidis waits up to that long for
// more to send in the same write, which cuts system calls on both sides
// when many calls are in flight (measured: Strict Inc from 64 goroutines
// 1.1–1.3× faster, and no cost to a lone caller, whose next call comes a
// round trip later). Give your own clients the same setting.
func FromURL(rawURL string) (*Backend, error) {
	opt, err := urlOptions(rawURL)
	if err != nil {
		return nil, err
	}
	c, err := rd.NewClient(opt)
	if err != nil {
		return nil, driver.NotApplied(fmt.Errorf("rueidis: %w", err))
	}
	return &Backend{c: c, owned: true, stopped: stopFlag(reflect.ValueOf(c), 0)}, nil
}

// urlOptions is FromURL's client options: rueidis.ParseURL's, with
// master_name and max_flush_delay understood.
func urlOptions(rawURL string) (rd.ClientOption, error) {
	flushDelay := DefaultMaxFlushDelay
	if u, err := url.Parse(rawURL); err == nil {
		q := u.Query()
		if q.Get("master_name") != "" && q.Get("master_set") == "" {
			q.Set("master_set", q.Get("master_name"))
			q.Del("master_name")
		}
		if q.Has("max_flush_delay") {
			if vs := q["max_flush_delay"]; len(vs) > 1 {
				return rd.ClientOption{}, fmt.Errorf("rueidis: %w: max_flush_delay is given %d times (%q); give it once", backend.ErrInvalidOption, len(vs), vs)
			}
			d, err := time.ParseDuration(q.Get("max_flush_delay"))
			if err != nil || d < 0 {
				return rd.ClientOption{}, fmt.Errorf("rueidis: %w: max_flush_delay %q is not a duration ≥ 0", backend.ErrInvalidOption, q.Get("max_flush_delay"))
			}
			if d > MaxFlushDelayLimit {
				return rd.ClientOption{}, fmt.Errorf("rueidis: %w: max_flush_delay %v is above %v (the client would pause that long after every write while calls are in flight; did you mean µs?)", backend.ErrInvalidOption, d, MaxFlushDelayLimit)
			}
			flushDelay = d
			q.Del("max_flush_delay")
		}
		if enc := q.Encode(); enc != u.RawQuery {
			u.RawQuery = enc
			rawURL = u.String()
		}
	}
	opt, err := rd.ParseURL(rawURL)
	if err != nil {
		return rd.ClientOption{}, fmt.Errorf("rueidis: %w: %w", backend.ErrInvalidOption, err)
	}
	opt.MaxFlushDelay = flushDelay
	return opt, nil
}

// MaxFlushDelayLimit is the largest max_flush_delay FromURL accepts: rueidis
// pauses its write loop that long after every flush while calls are in
// flight, so a delay far above a round trip only stalls the calls (a value
// above the limit is most likely a unit typo, 20ms for 20us).
const MaxFlushDelayLimit = 10 * time.Millisecond

// DefaultMaxFlushDelay is the ClientOption.MaxFlushDelay FromURL gives the
// clients it builds, and the one distkit recommends for clients you build.
const DefaultMaxFlushDelay = 20 * time.Microsecond

// Client returns the underlying client.
func (b *Backend) Client() rd.Client { return b.c }

// crossSlotPanic is what the rueidis builder panics with on keys from
// different Cluster slots (internal/cmds, multiKeySlotErr).
const crossSlotPanic = "multi key command with different key slots are not allowed"

// build builds EVALSHA, or EVAL when src is true. The rueidis builder
// panics on keys from different Cluster slots; that becomes ErrNotApplied
// (nothing was sent). Any other panic is a bug and is not hidden behind a
// retryable class.
func (b *Backend) build(s backend.Script, keys, args []string, src bool) (cmd rd.Completed, err error) {
	defer func() {
		if r := recover(); r != nil {
			if msg, ok := r.(string); !ok || msg != crossSlotPanic {
				panic(r)
			}
			err = driver.NotApplied(fmt.Errorf("rueidis: script %s: %v", s.Name(), r))
		}
	}()
	if src {
		return b.c.B().Eval().Script(s.Source()).Numkeys(int64(len(keys))).Key(keys...).Arg(args...).Build(), nil
	}
	return b.c.B().Evalsha().Sha1(s.SHA()).Numkeys(int64(len(keys))).Key(keys...).Arg(args...).Build(), nil
}

func isNoScript(err error) bool {
	re, ok := rd.IsRedisErr(err)
	return ok && re.IsNoScript()
}

// EvalScript implements backend.Backend.
func (b *Backend) EvalScript(ctx context.Context, s backend.Script, keys []string, args ...string) (backend.Value, error) {
	if err := b.usable(ctx); err != nil {
		return backend.Value{}, err
	}
	cmd, err := b.build(s, keys, args, false)
	if err != nil {
		return backend.Value{}, err
	}
	res := b.c.Do(ctx, cmd)
	if isNoScript(res.Error()) {
		if cmd, err = b.build(s, keys, args, true); err != nil {
			return backend.Value{}, err
		}
		res = b.c.Do(ctx, cmd)
	}
	return convert(s.Name(), res)
}

// EvalScripts implements backend.Backend with DoMulti, plus a second
// DoMulti only for calls that met NOSCRIPT.
func (b *Backend) EvalScripts(ctx context.Context, calls []backend.Call) []backend.Result {
	out := make([]backend.Result, len(calls))
	if len(calls) == 0 {
		return out
	}
	if err := b.usable(ctx); err != nil {
		for i := range out {
			out[i].Err = err
		}
		return out
	}
	// rueidis refuses to mix keyless and keyed commands in one DoMulti on
	// Cluster, so keyless calls (rare) go in a second DoMulti.
	var keyed, keyless []int
	for i, c := range calls {
		if len(c.Keys) == 0 {
			keyless = append(keyless, i)
		} else {
			keyed = append(keyed, i)
		}
	}
	b.doMulti(ctx, calls, keyed, out)
	b.doMulti(ctx, calls, keyless, out)
	return out
}

// doMulti runs calls[idx] with one DoMulti, then a second one with EVAL for
// those that met NOSCRIPT, and stores results in out.
func (b *Backend) doMulti(ctx context.Context, calls []backend.Call, idx []int, out []backend.Result) {
	for _, src := range []bool{false, true} {
		if len(idx) == 0 {
			return
		}
		cmds := make(rd.Commands, 0, len(idx))
		sent := make([]int, 0, len(idx))
		for _, i := range idx {
			cmd, err := b.build(calls[i].Script, calls[i].Keys, calls[i].Args, src)
			if err != nil {
				out[i] = backend.Result{Err: err}
				continue
			}
			cmds = append(cmds, cmd)
			sent = append(sent, i)
		}
		if len(cmds) == 0 {
			return
		}
		var retry []int
		for j, r := range b.c.DoMulti(ctx, cmds...) {
			i := sent[j]
			if !src && isNoScript(r.Error()) {
				retry = append(retry, i)
				continue
			}
			out[i].Value, out[i].Err = convert(calls[i].Script.Name(), r)
		}
		idx = retry
	}
}

// Heartbeat implements backend.Backend.
func (b *Backend) Heartbeat(ctx context.Context, group, member string, ttl time.Duration) error {
	return driver.EvalHeartbeat(ctx, b, group, member, ttl)
}

// AcquireLease implements backend.Backend.
func (b *Backend) AcquireLease(ctx context.Context, key, owner string, ttl time.Duration) (bool, error) {
	return driver.EvalLease(ctx, b, driver.AcquireLeaseScript, key, owner, ttl)
}

// RenewLease implements backend.Backend.
func (b *Backend) RenewLease(ctx context.Context, key, owner string, ttl time.Duration) (bool, error) {
	return driver.EvalLease(ctx, b, driver.RenewLeaseScript, key, owner, ttl)
}

// ReleaseLease implements backend.Backend.
func (b *Backend) ReleaseLease(ctx context.Context, key, owner string) (bool, error) {
	return driver.EvalLease(ctx, b, driver.ReleaseLeaseScript, key, owner, 0)
}

// Close marks the backend closed and closes the client if FromURL built it.
func (b *Backend) Close() error {
	if b.closed.Swap(true) {
		return nil
	}
	b.fanout().Close()
	b.subStop()
	b.subs.Wait()
	if b.owned {
		b.c.Close()
	}
	return nil
}

func (b *Backend) usable(ctx context.Context) error {
	if b.closed.Load() {
		return driver.NotApplied(backend.ErrClosed)
	}
	if b.stopped != nil && atomic.LoadUint32(b.stopped) != 0 {
		return driver.NotApplied(fmt.Errorf("%w: the rueidis client was closed", backend.ErrClosed))
	}
	if err := ctx.Err(); err != nil {
		return driver.NotApplied(err)
	}
	return nil
}

func convert(script string, r rd.RedisResult) (backend.Value, error) {
	msg, err := r.ToMessage()
	if err != nil {
		if rd.IsRedisNil(err) {
			return backend.Nil(), nil
		}
		return backend.Value{}, classify(script, err)
	}
	return toValue(&msg), nil
}

func toValue(m *rd.RedisMessage) backend.Value {
	switch {
	case m.IsNil():
		return backend.Nil()
	case m.IsInt64():
		n, _ := m.ToInt64()
		return backend.Int(n)
	case m.IsString():
		s, _ := m.ToString()
		return backend.Str(s)
	case m.IsArray():
		arr, _ := m.ToArray()
		vs := make([]backend.Value, len(arr))
		for i := range arr {
			vs[i] = toValue(&arr[i])
		}
		return backend.Arr(vs...)
	case m.IsBool():
		v, _ := m.ToBool()
		return backend.Bool(v)
	case m.IsFloat64():
		f, _ := m.ToFloat64()
		return backend.Int(int64(f))
	}
	if s, err := m.ToString(); err == nil {
		return backend.Str(s)
	}
	return backend.Str(strconv.Quote(m.String()))
}

func classify(script string, err error) error {
	if re, ok := rd.IsRedisErr(err); ok {
		return driver.ClassifyReply(script, re.Error())
	}
	if errors.Is(err, rd.ErrClosing) {
		// Also the answer to commands already written when a connection
		// closes: only a call on a closed backend (usable) is known unsent.
		return driver.Indeterminate(fmt.Errorf("%w: %w", backend.ErrClosed, err))
	}
	var op *net.OpError
	if errors.As(err, &op) && op.Op == "dial" {
		return driver.NotApplied(err)
	}
	return driver.Indeterminate(err)
}

// EvalScriptWait implements backend.Replicator: the script and WAIT go
// out together on one connection (on Cluster, a dedicated connection to the
// node that serves the keys, so that a MOVED reply is returned rather than
// followed to a node whose WAIT would not cover the script's writes). A
// WAIT that fails after the script ran counts no acknowledgement.
func (b *Backend) EvalScriptWait(ctx context.Context, s backend.Script, keys, args []string, replicas int, timeout time.Duration) (backend.Value, int, error) {
	if err := b.usable(ctx); err != nil {
		return backend.Value{}, 0, err
	}
	if replicas <= 0 || timeout < time.Millisecond {
		return backend.Value{}, 0, driver.NotApplied(fmt.Errorf("rueidis: %w: WAIT %d replicas within %v", backend.ErrInvalidOption, replicas, timeout))
	}
	for _, src := range []bool{false, true} {
		cmd, err := b.build(s, keys, args, src)
		if err != nil {
			return backend.Value{}, 0, err
		}
		wait := b.c.B().Wait().Numreplicas(int64(replicas)).Timeout(timeout.Milliseconds()).Build()
		var res []rd.RedisResult
		if b.c.Mode() == rd.ClientModeCluster {
			b.c.Dedicated(func(dc rd.DedicatedClient) error {
				res = dc.DoMulti(ctx, cmd, wait)
				return nil
			})
		} else {
			res = b.c.DoMulti(ctx, cmd, wait)
		}
		if !src && isNoScript(res[0].Error()) {
			continue
		}
		v, err := convert(s.Name(), res[0])
		if err != nil {
			return backend.Value{}, 0, err
		}
		n, err := res[1].AsInt64()
		if err != nil {
			n = 0
		}
		return v, int(n), nil
	}
	panic("unreachable")
}

// Subscribe implements backend.Notifier: one server subscription per
// channel (confirmed before Subscribe returns, which is bounded by ctx),
// shared by every local subscriber and kept across reconnects.
func (b *Backend) Subscribe(ctx context.Context, channel string) (<-chan struct{}, func(), error) {
	if err := b.usable(ctx); err != nil {
		return nil, nil, err
	}
	return b.fanout().Subscribe(ctx, channel)
}

func (b *Backend) fanout() *driver.Fanout {
	b.fanOnce.Do(func() {
		b.subCtx, b.subStop = context.WithCancel(context.Background())
		b.fan = driver.NewFanout(b.openSub)
	})
	return b.fan
}

// Backoff between subscription attempts after a connection was lost.
const (
	minResubscribe = 50 * time.Millisecond
	maxResubscribe = time.Second
)

// openSub subscribes to channel from a goroutine that keeps the
// subscription until stop: when rueidis's Receive returns after the server
// confirmed the subscription (the connection was lost, and the client does
// not retry by itself or gave up), it wakes the local subscribers (messages
// may have been lost) and subscribes again, backing off up to 1 s (at once
// after rueidis's ErrClosing, a connection closed under it; it gives up
// when that repeats without a confirmation: the client was closed). When
// rueidis re-subscribes by itself, the confirmation wakes them too. openSub
// returns once the first subscription is confirmed, or its error, or when
// ctx ends.
func (b *Backend) openSub(ctx context.Context, channel string) (func(), error) {
	rctx, cancel := context.WithCancel(b.subCtx)
	ready := make(chan error, 1)
	var confirmations atomic.Int64
	hctx := rd.WithOnSubscriptionHook(rctx, func(s rd.PubSubSubscription) {
		if s.Kind != "subscribe" {
			return
		}
		if confirmations.Add(1) > 1 {
			b.fan.Deliver(channel) // subscribed again after a reconnect
			return
		}
		select {
		case ready <- nil:
		default:
		}
	})
	done := make(chan struct{})
	b.subs.Add(1)
	go func() {
		defer b.subs.Done()
		defer close(done)
		wait := minResubscribe
		closing := 0 // ErrClosing in a row without a confirmation between
		for {
			before := confirmations.Load()
			err := b.c.Receive(hctx, b.c.B().Subscribe().Channel(channel).Build(), func(rd.PubSubMessage) {
				b.fan.Deliver(channel)
			})
			if rctx.Err() != nil {
				return
			}
			if confirmations.Load() == 0 {
				if err == nil {
					err = errors.New("subscription ended before it was confirmed")
				}
				select {
				case ready <- classify("subscribe", err):
				default:
				}
				return
			}
			b.fan.Deliver(channel) // the connection was lost: messages may have been
			if confirmations.Load() != before {
				closing = 0
			}
			if errors.Is(err, rd.ErrClosing) {
				// A connection closed under the subscription (a Cluster node
				// removed, a Sentinel master switch): subscribe again at once.
				// Twice in a row without a confirmation: the client itself
				// was closed, and every call now fails at once.
				if closing++; closing > 1 {
					return
				}
				continue
			}
			closing = 0
			select {
			case <-time.After(wait):
			case <-rctx.Done():
				return
			}
			wait = min(2*wait, maxResubscribe)
		}
	}()
	unsubscribe := func() {
		uctx, ucancel := context.WithTimeout(context.Background(), time.Second)
		// Pinned: rueidis may answer an UNSUBSCRIBE (its reply is a push)
		// before its writer has sent it, and would recycle the command
		// under the writer (a data race the race detector caught).
		b.c.Do(uctx, b.c.B().Unsubscribe().Channel(channel).Build().Pin())
		ucancel()
	}
	stop := func() {
		unsubscribe()
		cancel()
		<-done
	}
	select {
	case err := <-ready:
		if err != nil {
			cancel()
			return nil, err
		}
		return stop, nil
	case <-ctx.Done():
		// Given up before the server confirmed: rueidis's Receive returns
		// without unsubscribing, and its SUBSCRIBE may be on the wire. Once
		// it returned, unsubscribe, so that no stray subscription stays on
		// the server. (The Fanout opens no newer subscription of the channel
		// before this returns: the UNSUBSCRIBE cannot undo one.)
		cancel()
		<-done
		unsubscribe()
		return nil, driver.NotApplied(ctx.Err())
	}
}
