// Package goredis is the distkit backend over github.com/redis/go-redis/v9.
// It works with every client kind go-redis builds: a standalone
// *redis.Client, a *redis.ClusterClient, a *redis.Client from
// redis.NewFailoverClient (Redis Sentinel), and whatever
// redis.NewUniversalClient returns for one address, several, or a
// MasterName. Import it under the name goredisbackend, next to the client
// package it wraps:
//
//	import (
//		"github.com/redis/go-redis/v9"
//
//		goredisbackend "github.com/distkit-go/distkit/backend/goredis"
//	)
//
//	client := redis.NewClient(&redis.Options{Addr: "127.0.0.1:6379"})
//	defer client.Close()
//	b, err := goredisbackend.New(client) // b.Close does not close client
//	if err != nil {
//		log.Fatal(err)
//	}
//	defer b.Close()
//	c, err := counter.NewStrict(b, counter.Options{Prefix: "shop"})
//
// Scripts run with EVALSHA and fall back to EVAL when the server answers
// NOSCRIPT; batches are pipelined (split per node on Cluster).
//
// # What New does with your client
//
// distkit reports success only for exactly one execution of a script,
// ErrNotApplied only when the server certainly did not run it, and
// ErrIndeterminate otherwise. go-redis on its own re-sends commands: after
// a lost reply (Options.MaxRetries, default 3), and on Cluster after EOF or
// a read timeout up to ClusterOptions.MaxRedirects times even with
// MaxRetries -1; it also retries every dial DialerRetries times (default
// 5 × 100 ms), so that a call during an outage used to burn its whole
// deadline. New therefore never sends distkit's commands through your
// client's settings as they are:
//
//   - For a *redis.Client (not a failover client) and a
//     *redis.ClusterClient, New builds a client of its own from
//     client.Options(): same addresses, credentials, TLS, dialer, pool size
//     and timeouts, with MaxRetries -1 (no retry), DialerRetries 1 (one
//     dial attempt: an outage is reported ErrNotApplied at once) and
//     ContextTimeoutEnabled (a call's context deadline bounds its socket
//     reads and writes; a ReadTimeout or WriteTimeout of -2, "no deadline
//     calls", which would keep go-redis from setting any socket deadline,
//     becomes -1, no timeout). Cluster redirects (MOVED, ASK) are still
//     followed, up to your MaxRedirects. Hooks added to your client with AddHook are not copied.
//     Close closes this client; yours is never modified nor closed.
//   - For a failover client (Sentinel), New uses a view of your client
//     (Client.WithTimeout) that shares its connection pool, so it follows
//     the master exactly as your client does, with MaxRetries off and
//     ContextTimeoutEnabled on for distkit's commands only (timeouts of -2
//     become "no timeout", as above). Dials are your pool's: an outage is
//     reported ErrNotApplied after your DialerRetries attempts or at the
//     call's deadline, whichever comes first (set DialerRetries: 1 for one
//     attempt). Close leaves your client open.
//   - Every distkit command is marked so that no retry path of go-redis
//     (client retries, Cluster EOF/timeout retries, pipeline retries)
//     ever sends it a second time; redirects after MOVED or ASK, which the
//     server answers without running the script, are the only re-sends. On
//     Cluster the driver's node clients carry a hook that clears a command's
//     error before each pipelined attempt writes it: go-redis would
//     otherwise leave the MOVED of an earlier attempt on a command that the
//     redirect ran and whose reply was lost (reported ErrNotApplied).
//   - go-redis bounds socket reads and writes by a context's deadline only,
//     not by its cancellation. So that a call ends when its context is
//     cancelled, a call whose context can be cancelled runs in a goroutine
//     of its own under a context that keeps the caller's deadline (or, when
//     there is none, the client's ReadTimeout, 30 s when that is unset) but
//     not its cancellation; the caller returns at the cancellation with an
//     error matching ErrIndeterminate (the command may still run), and the
//     goroutine ends by that bound. A context that cannot be cancelled
//     (context.Background) costs nothing extra.
//
// Any other redis.UniversalClient (a *redis.Ring, a wrapper of your own) is
// refused with an error wrapping backend.ErrInvalidOption: distkit cannot
// control how it retries.
package goredis

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/url"
	"reflect"
	"sync"
	"sync/atomic"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/distkit-go/distkit/backend"
	"github.com/distkit-go/distkit/backend/driver"
)

// Backend is the go-redis backend. It is safe for concurrent use.
type Backend struct {
	c      redis.UniversalClient // the client distkit's commands go through
	user   redis.UniversalClient // the client the user passed (nil for FromURL)
	owned  bool                  // Close closes c
	closed atomic.Bool
	// inflight counts calls that run in a goroutine of their own (see
	// call); bound is how long such a call may take when its context has
	// no deadline.
	inflight sync.WaitGroup
	bound    time.Duration
	// closeMu orders a call's registration (closed check, inflight.Add)
	// before Close's (closed set, then inflight.Wait): a call racing Close
	// either registers before Close waits, or sees it closed.
	closeMu sync.RWMutex

	subMu   sync.Mutex
	fan     *driver.Fanout
	ps      *redis.PubSub
	psDone  chan struct{}
	pending map[string][]chan struct{} // channels awaiting the server's confirmation
}

var (
	_ backend.Backend    = (*Backend)(nil)
	_ backend.Notifier   = (*Backend)(nil)
	_ backend.Replicator = (*Backend)(nil)
)

// wrap returns the Backend over c, the client distkit's commands go
// through.
func wrap(c, user redis.UniversalClient, owned bool) *Backend {
	var rt time.Duration
	switch c := c.(type) {
	case *redis.Client:
		rt = c.Options().ReadTimeout
	case *redis.ClusterClient:
		rt = c.Options().ReadTimeout
	}
	if rt <= 0 {
		rt = 30 * time.Second
	}
	return &Backend{c: c, user: user, owned: owned, bound: rt}
}

// failoverAddr is the Addr go-redis gives the options of a failover
// (Sentinel) client.
const failoverAddr = "FailoverClient"

// New returns a backend over client; see the package documentation for
// exactly what it builds from it. A nil client (also a typed nil pointer)
// or a client kind distkit cannot drive safely is refused with an error
// wrapping backend.ErrInvalidOption. Close does not close client.
func New(client redis.UniversalClient) (*Backend, error) {
	if isNil(client) {
		return nil, fmt.Errorf("goredis: %w: nil client", backend.ErrInvalidOption)
	}
	switch c := client.(type) {
	case *redis.Client:
		if c.Options().Addr == failoverAddr {
			return wrap(failoverView(c), client, false), nil
		}
		return wrap(redis.NewClient(clientOptions(c.Options())), client, true), nil
	case *redis.ClusterClient:
		return wrap(redis.NewClusterClient(clusterOptions(c.Options())), client, true), nil
	}
	return nil, fmt.Errorf("goredis: %w: client of type %T: distkit drives *redis.Client (standalone or failover) and *redis.ClusterClient only, because it must control their retries",
		backend.ErrInvalidOption, client)
}

func isNil(c redis.UniversalClient) bool {
	if c == nil {
		return true
	}
	v := reflect.ValueOf(c)
	return v.Kind() == reflect.Pointer && v.IsNil()
}

// undoInit maps a duration that go-redis's option init normalised back to
// what the user wrote, so that a second init keeps its meaning: after init
// 0 means "none" (the user wrote -1).
func undoInit(d time.Duration) time.Duration {
	if d == 0 {
		return -1
	}
	return d
}

// ctxTimeout maps a read or write timeout of the user's options (after
// go-redis's init) to the input that gives the driver's copy the same
// timeout with the call's context deadline in force. "No timeout" (0 after
// init) and "no deadline calls" (-1 after a standalone init, -2 in Cluster
// options) both become -1, no timeout: with "no deadline calls" go-redis
// never sets a socket deadline, so a call's context would not bound it.
func ctxTimeout(d time.Duration) time.Duration {
	if d <= 0 {
		return -1
	}
	return d
}

// clientOptions copies the options of a standalone client with distkit's
// settings.
func clientOptions(in *redis.Options) *redis.Options {
	o := *in
	if in.MaintNotificationsConfig != nil {
		mc := *in.MaintNotificationsConfig
		o.MaintNotificationsConfig = &mc
	}
	o.ReadTimeout = ctxTimeout(o.ReadTimeout)
	o.WriteTimeout = ctxTimeout(o.WriteTimeout)
	o.MinRetryBackoff = undoInit(o.MinRetryBackoff)
	o.MaxRetryBackoff = undoInit(o.MaxRetryBackoff)
	o.ClientSideCacheConfig, o.ClientSideCache = nil, nil
	o.AutoPipelineOptions = nil
	o.PushNotificationProcessor = nil // the user's client's own; ours gets one
	distkitSettings(&o.MaxRetries, &o.DialerRetries, &o.ContextTimeoutEnabled)
	return &o
}

// clusterOptions copies the options of a Cluster client with distkit's
// settings.
func clusterOptions(in *redis.ClusterOptions) *redis.ClusterOptions {
	o := *in
	o.Addrs = append([]string(nil), in.Addrs...)
	if in.MaintNotificationsConfig != nil {
		mc := *in.MaintNotificationsConfig
		o.MaintNotificationsConfig = &mc
	}
	if o.MaxRedirects == 0 {
		o.MaxRedirects = -1 // the user disabled redirects
	}
	o.ReadTimeout = ctxTimeout(o.ReadTimeout)
	o.WriteTimeout = ctxTimeout(o.WriteTimeout)
	o.MinRetryBackoff = undoInit(o.MinRetryBackoff)
	o.MaxRetryBackoff = undoInit(o.MaxRetryBackoff)
	o.AutoPipelineOptions = nil
	o.PushNotificationProcessor = nil
	distkitSettings(&o.MaxRetries, &o.DialerRetries, &o.ContextTimeoutEnabled)
	freshErrorsOnNodes(&o)
	return &o
}

// freshErrorsOnNodes installs freshErrors on every node client of a
// Cluster client built from o.
func freshErrorsOnNodes(o *redis.ClusterOptions) {
	newClient := o.NewClient
	if newClient == nil {
		newClient = redis.NewClient
	}
	o.NewClient = func(opt *redis.Options) *redis.Client {
		c := newClient(opt)
		c.AddHook(freshErrors{})
		return c
	}
}

// freshErrors is a hook on the node clients of the driver's Cluster
// clients. go-redis re-sends a pipelined command after MOVED, ASK or a
// failed connection attempt (the server did not run it), and the error of
// that earlier attempt stays on the command unless the new attempt reads
// its reply: a command that the re-send ran, and whose reply was then
// lost, would still say MOVED, which is ErrNotApplied. The hook clears the
// error of distkit's commands before each attempt writes them, so that each
// ends with the error of its last attempt.
type freshErrors struct{}

func (freshErrors) DialHook(next redis.DialHook) redis.DialHook          { return next }
func (freshErrors) ProcessHook(next redis.ProcessHook) redis.ProcessHook { return next }
func (freshErrors) ProcessPipelineHook(next redis.ProcessPipelineHook) redis.ProcessPipelineHook {
	return func(ctx context.Context, cmds []redis.Cmder) error {
		for _, c := range cmds {
			if e, ok := c.(evalCmd); ok {
				e.SetErr(nil)
			}
		}
		return next(ctx, cmds)
	}
}

func distkitSettings(maxRetries, dialerRetries *int, ctxDeadlines *bool) {
	*maxRetries = -1
	*dialerRetries = 1
	*ctxDeadlines = true
}

// failoverView returns a client that shares c's connection pool (so it
// follows Sentinel's master switches with c) with retries off and context
// deadlines on for the commands sent through it. Its timeouts are c's,
// except that "no deadline calls" (-1 after init) becomes "no timeout" (0):
// go-redis sets no socket deadline at all with the former, so a call's
// context would not bound it.
func failoverView(c *redis.Client) *redis.Client {
	o := c.Options()
	v := c.WithTimeout(max(o.ReadTimeout, 0))
	vo := v.Options() // the view's own copy
	vo.WriteTimeout = max(o.WriteTimeout, 0)
	vo.MaxRetries = 0 // after init, 0 means no retry
	vo.ContextTimeoutEnabled = true
	return v
}

// FromURL builds a client from a URL and returns a backend that owns it
// (Close closes it). The forms:
//
//	redis://[user:pass@]host:port[/db]                    standalone
//	redis://host:port?addr=host2:port2&addr=host3:port3   Cluster (seed nodes)
//	redis://[user:pass@]sentinel1:26379[/db]?addr=sentinel2:26379&master_set=mymaster
//	                                                      Sentinel (the hosts are
//	                                                      Sentinels; master_name is an alias)
//
// rediss:// enables TLS. Other query parameters are go-redis's (see
// redis.ParseURL, redis.ParseClusterURL, redis.ParseFailoverURL). The client
// gets distkit's settings: MaxRetries -1, DialerRetries 1,
// ContextTimeoutEnabled.
func FromURL(rawURL string) (*Backend, error) {
	u, err := url.Parse(rawURL)
	if err != nil {
		return nil, fmt.Errorf("goredis: %w: %w", backend.ErrInvalidOption, err)
	}
	q := u.Query()
	if ms := q.Get("master_set"); ms != "" {
		q.Del("master_set")
		q.Set("master_name", ms)
		u.RawQuery = q.Encode()
	}
	switch {
	case q.Get("master_name") != "":
		opts, err := redis.ParseFailoverURL(u.String())
		if err != nil {
			return nil, fmt.Errorf("goredis: %w: %w", backend.ErrInvalidOption, err)
		}
		distkitSettings(&opts.MaxRetries, &opts.DialerRetries, &opts.ContextTimeoutEnabled)
		return wrap(redis.NewFailoverClient(opts), nil, true), nil
	case q.Has("addr"):
		opts, err := redis.ParseClusterURL(rawURL)
		if err != nil {
			return nil, fmt.Errorf("goredis: %w: %w", backend.ErrInvalidOption, err)
		}
		distkitSettings(&opts.MaxRetries, &opts.DialerRetries, &opts.ContextTimeoutEnabled)
		freshErrorsOnNodes(opts)
		return wrap(redis.NewClusterClient(opts), nil, true), nil
	}
	opts, err := redis.ParseURL(rawURL)
	if err != nil {
		return nil, fmt.Errorf("goredis: %w: %w", backend.ErrInvalidOption, err)
	}
	distkitSettings(&opts.MaxRetries, &opts.DialerRetries, &opts.ContextTimeoutEnabled)
	return wrap(redis.NewClient(opts), nil, true), nil
}

// Client returns the client distkit's commands go through: the driver's
// own copy (see New), a view of a failover client, or the client FromURL
// built. Use it for reads and diagnostics; commands sent through it get
// distkit's settings (no retries).
func (b *Backend) Client() redis.UniversalClient { return b.c }

// evalCmd is a script call that no go-redis retry path may send twice.
type evalCmd struct{ *redis.Cmd }

// NoRetry tells go-redis never to re-send the command after an attempt
// that may have reached the server.
func (evalCmd) NoRetry() bool { return true }

func newEval(ctx context.Context, name, payload string, keys, argv []string) evalCmd {
	a := make([]any, 3, 3+len(keys)+len(argv))
	a[0], a[1], a[2] = name, payload, len(keys)
	for _, k := range keys {
		a = append(a, k)
	}
	for _, v := range argv {
		a = append(a, v)
	}
	cmd := redis.NewCmd(ctx, a...)
	if len(keys) > 0 {
		cmd.SetFirstKeyPos(3)
	}
	return evalCmd{cmd}
}

func isNoScript(err error) bool { return redis.HasErrorPrefix(err, "NOSCRIPT") }

// EvalScript implements backend.Backend.
func (b *Backend) EvalScript(ctx context.Context, s backend.Script, keys []string, argv ...string) (backend.Value, error) {
	if err := b.usable(ctx); err != nil {
		return backend.Value{}, err
	}
	var cmd evalCmd
	if err := b.call(ctx, func(ctx context.Context) {
		cmd = newEval(ctx, "evalsha", s.SHA(), keys, argv)
		_ = b.c.Process(ctx, cmd)
		if isNoScript(cmd.Err()) {
			cmd = newEval(ctx, "eval", s.Source(), keys, argv)
			_ = b.c.Process(ctx, cmd)
		}
	}); err != nil {
		return backend.Value{}, err
	}
	res, err := cmd.Result()
	return convert(s.Name(), res, err, true)
}

// call runs fn (one command, or one pipeline, and its NOSCRIPT fallback)
// so that the caller gets control back when ctx is cancelled; see the
// package documentation. It returns nil when fn ran to its end, else an
// error matching ErrIndeterminate and ctx's error: fn may have sent its
// commands, and they may still run.
func (b *Backend) call(ctx context.Context, fn func(ctx context.Context)) error {
	if ctx.Done() == nil {
		fn(ctx)
		return nil
	}
	deadline, ok := ctx.Deadline()
	if !ok {
		deadline = time.Now().Add(b.bound)
	}
	b.closeMu.RLock()
	if b.closed.Load() {
		b.closeMu.RUnlock()
		return driver.NotApplied(backend.ErrClosed)
	}
	b.inflight.Add(1)
	b.closeMu.RUnlock()
	inner, cancel := context.WithDeadline(context.WithoutCancel(ctx), deadline)
	done := make(chan struct{})
	go func() {
		defer b.inflight.Done()
		defer cancel()
		defer close(done)
		fn(inner)
	}()
	select {
	case <-done:
		return nil
	case <-ctx.Done():
		select {
		case <-done: // finished meanwhile: its outcome is known
			return nil
		default:
		}
		return driver.Indeterminate(fmt.Errorf("goredis: %w while the call was in flight", ctx.Err()))
	}
}

// EvalScripts implements backend.Backend with one pipeline (one per node
// on Cluster), plus a second one only for calls that met NOSCRIPT.
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
	cmds := make([]evalCmd, len(calls))
	if err := b.call(ctx, func(ctx context.Context) {
		pipe := b.c.Pipeline()
		for i, c := range calls {
			cmds[i] = newEval(ctx, "evalsha", c.Script.SHA(), c.Keys, c.Args)
			_ = pipe.Process(ctx, cmds[i])
		}
		_, _ = pipe.Exec(ctx) // per-command errors are read below
		var retry []int
		for i, cmd := range cmds {
			if isNoScript(cmd.Err()) {
				retry = append(retry, i)
			}
		}
		if len(retry) > 0 {
			pipe = b.c.Pipeline()
			for _, i := range retry {
				c := calls[i]
				cmds[i] = newEval(ctx, "eval", c.Script.Source(), c.Keys, c.Args)
				_ = pipe.Process(ctx, cmds[i])
			}
			_, _ = pipe.Exec(ctx)
		}
	}); err != nil {
		for i := range out {
			out[i].Err = err
		}
		return out
	}
	for i, cmd := range cmds {
		res, err := cmd.Result()
		out[i].Value, out[i].Err = convert(calls[i].Script.Name(), res, err, false)
	}
	return out
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

// Close marks the backend closed and closes the client the driver built
// (New's copy, or FromURL's client); the client passed to New stays open.
// Calls in flight when Close closes that client end with ErrIndeterminate
// (they may have run) or ErrNotApplied, never with a false success.
func (b *Backend) Close() error {
	b.closeMu.Lock()
	already := b.closed.Swap(true)
	b.closeMu.Unlock()
	if already {
		return nil
	}
	b.closeSubs()
	if b.owned {
		err := b.c.Close()
		b.inflight.Wait() // their connections are closed: they end at once
		return err
	}
	return nil
}

func (b *Backend) usable(ctx context.Context) error {
	if b.closed.Load() {
		return driver.NotApplied(backend.ErrClosed)
	}
	if err := ctx.Err(); err != nil {
		return driver.NotApplied(err)
	}
	return nil
}

// convert maps a go-redis reply to a Value and classifies its error. single
// reports a lone command (not a pipeline).
func convert(script string, res any, err error, single bool) (backend.Value, error) {
	if err != nil {
		if errors.Is(err, redis.Nil) {
			return backend.Nil(), nil
		}
		return backend.Value{}, classify(script, err, single)
	}
	return toValue(res), nil
}

func toValue(res any) backend.Value {
	switch x := res.(type) {
	case nil:
		return backend.Nil()
	case int64:
		return backend.Int(x)
	case string:
		return backend.Str(x)
	case bool: // RESP3 boolean, not produced by Lua but handled for safety
		return backend.Bool(x)
	case []any:
		vs := make([]backend.Value, len(x))
		for i, e := range x {
			vs[i] = toValue(e)
		}
		return backend.Arr(vs...)
	}
	return backend.Str(fmt.Sprint(res))
}

// classify sorts a failed command. A command distkit sends is never re-sent
// by go-redis, so the failure belongs to its one attempt:
//   - an error reply is classified by its code (driver.ClassifyReply);
//   - an exhausted pool, a failed dial: the request was never written,
//     ErrNotApplied;
//   - a closed client: go-redis says so also to commands in flight when it
//     closes, so ErrIndeterminate (and ErrClosed); a call on a closed
//     backend is ErrNotApplied before it reaches go-redis;
//   - a context error on a lone command: go-redis returns the context's
//     error only while it waits for a connection (socket deadlines surface
//     as network timeouts), so the request was never written, ErrNotApplied.
//     In a pipeline a context error can also overwrite the result of a
//     command that ran (Cluster redirect backoff), so there it is
//     ErrIndeterminate;
//   - anything else (EOF, reset, timeout) may have followed the write:
//     ErrIndeterminate.
func classify(script string, err error, single bool) error {
	var rerr redis.Error
	switch {
	case errors.As(err, &rerr):
		return driver.ClassifyReply(script, rerr.Error())
	case errors.Is(err, redis.ErrClosed):
		return driver.Indeterminate(fmt.Errorf("%w: %w", backend.ErrClosed, err))
	case errors.Is(err, redis.ErrPoolTimeout), errors.Is(err, redis.ErrPoolExhausted):
		return driver.NotApplied(err)
	case single && (err == context.Canceled || err == context.DeadlineExceeded):
		return driver.NotApplied(err)
	}
	var op *net.OpError
	if errors.As(err, &op) && op.Op == "dial" {
		return driver.NotApplied(err)
	}
	return driver.Indeterminate(err)
}

// EvalScriptWait implements backend.Replicator: the script and WAIT go
// out in one pipeline on one connection (on Cluster, through the client
// of the master that serves the keys, which returns a MOVED reply rather
// than following it to a node whose WAIT would not cover the script's
// writes). A WAIT that fails after the script ran counts no
// acknowledgement.
func (b *Backend) EvalScriptWait(ctx context.Context, s backend.Script, keys, argv []string, replicas int, timeout time.Duration) (backend.Value, int, error) {
	if err := b.usable(ctx); err != nil {
		return backend.Value{}, 0, err
	}
	if replicas <= 0 || timeout < time.Millisecond {
		return backend.Value{}, 0, driver.NotApplied(fmt.Errorf("goredis: %w: WAIT %d replicas within %v", backend.ErrInvalidOption, replicas, timeout))
	}
	var c redis.Cmdable = b.c
	if cc, ok := b.c.(*redis.ClusterClient); ok {
		if len(keys) == 0 {
			return backend.Value{}, 0, driver.NotApplied(fmt.Errorf("goredis: %w: a script waited for on Cluster needs a key", backend.ErrInvalidOption))
		}
		node, err := cc.MasterForKey(ctx, keys[0])
		if err != nil {
			return backend.Value{}, 0, classify(s.Name(), err, true)
		}
		c = node
	}
	for _, src := range []bool{false, true} {
		name, payload := "evalsha", s.SHA()
		if src {
			name, payload = "eval", s.Source()
		}
		cmd := newEval(ctx, name, payload, keys, argv)
		wait := evalCmd{redis.NewCmd(ctx, "wait", replicas, timeout.Milliseconds())}
		pipe := c.Pipeline()
		_ = pipe.Process(ctx, cmd)
		_ = pipe.Process(ctx, wait)
		_, _ = pipe.Exec(ctx)
		if !src && isNoScript(cmd.Err()) {
			continue
		}
		res, err := cmd.Result()
		if cc, ok := b.c.(*redis.ClusterClient); ok && (redis.HasErrorPrefix(err, "MOVED") || redis.HasErrorPrefix(err, "ASK")) {
			cc.ReloadState(ctx) // the slot moved: the next call asks the right master
		}
		v, err := convert(s.Name(), res, err, false)
		if err != nil {
			return backend.Value{}, 0, err
		}
		n, err := wait.Int64()
		if err != nil {
			n = 0
		}
		return v, int(n), nil
	}
	panic("unreachable")
}

// Subscribe implements backend.Notifier: all channels share one go-redis
// PubSub connection; each channel is subscribed once on the server
// (confirmed before Subscribe returns, which is bounded by ctx) and fanned
// out locally. go-redis reconnects that connection and re-subscribes by
// itself; each re-subscription wakes the local subscribers, since messages
// published meanwhile were lost.
func (b *Backend) Subscribe(ctx context.Context, channel string) (<-chan struct{}, func(), error) {
	if err := b.usable(ctx); err != nil {
		return nil, nil, err
	}
	return b.fanout().Subscribe(ctx, channel)
}

func (b *Backend) fanout() *driver.Fanout {
	b.subMu.Lock()
	defer b.subMu.Unlock()
	if b.fan == nil {
		b.fan = driver.NewFanout(b.openSub)
		b.pending = map[string][]chan struct{}{}
	}
	return b.fan
}

// pubsub returns the shared PubSub, starting it and its dispatcher first.
func (b *Backend) pubsub() *redis.PubSub {
	b.subMu.Lock()
	defer b.subMu.Unlock()
	if b.ps == nil {
		b.ps = b.c.Subscribe(context.Background())
		msgs := b.ps.ChannelWithSubscriptions()
		b.psDone = make(chan struct{})
		go b.dispatch(msgs, b.psDone)
	}
	return b.ps
}

func (b *Backend) dispatch(msgs <-chan any, done chan struct{}) {
	defer close(done)
	for m := range msgs {
		switch m := m.(type) {
		case *redis.Message:
			b.fan.Deliver(m.Channel)
		case *redis.Subscription:
			if m.Kind != "subscribe" {
				continue
			}
			b.subMu.Lock()
			waiting := b.pending[m.Channel]
			delete(b.pending, m.Channel)
			b.subMu.Unlock()
			for _, ch := range waiting {
				close(ch)
			}
			if len(waiting) == 0 { // subscribed again after a reconnect
				b.fan.Deliver(m.Channel)
			}
		}
	}
}

// dropPending forgets a confirmation openSub no longer waits for.
func (b *Backend) dropPending(channel string, ready chan struct{}) {
	b.subMu.Lock()
	defer b.subMu.Unlock()
	w := b.pending[channel]
	for i, ch := range w {
		if ch == ready {
			w = append(w[:i], w[i+1:]...)
			break
		}
	}
	if len(w) == 0 {
		delete(b.pending, channel)
	} else {
		b.pending[channel] = w
	}
}

func (b *Backend) openSub(ctx context.Context, channel string) (func(), error) {
	ps := b.pubsub()
	ready := make(chan struct{})
	b.subMu.Lock()
	b.pending[channel] = append(b.pending[channel], ready)
	b.subMu.Unlock()
	stop := func() {
		uctx, cancel := context.WithTimeout(context.Background(), time.Second)
		defer cancel()
		ps.Unsubscribe(uctx, channel) // also when it fails, go-redis forgets the channel
	}
	// On failure go-redis must forget the channel (it records it even when
	// the SUBSCRIBE failed, and would subscribe it again on its next
	// reconnect). Unsubscribe forgets it at once and sends UNSUBSCRIBE
	// within ctx: when ctx is done it sends nothing, so that no late
	// UNSUBSCRIBE can follow a newer SUBSCRIBE of the channel (the server
	// keeps a stray subscription until the connection is replaced, whose
	// messages wake nobody or someone in vain).
	if err := ps.Subscribe(ctx, channel); err != nil {
		ps.Unsubscribe(ctx, channel)
		b.dropPending(channel, ready)
		return nil, classify("subscribe", err, false)
	}
	select {
	case <-ready:
		return stop, nil
	case <-ctx.Done():
		ps.Unsubscribe(ctx, channel)
		b.dropPending(channel, ready)
		return nil, driver.NotApplied(ctx.Err())
	}
}

func (b *Backend) closeSubs() {
	b.fanout().Close()
	b.subMu.Lock()
	ps, done := b.ps, b.psDone
	b.subMu.Unlock()
	if ps != nil {
		ps.Close()
		<-done
	}
}
