// Package goredis is the distkit backend over github.com/redis/go-redis/v9.
// It works with any redis.UniversalClient: a standalone *redis.Client, a
// *redis.ClusterClient or a failover (Sentinel) client. Import it under the
// name goredisbackend, next to the client package it wraps:
//
//	import (
//		"github.com/redis/go-redis/v9"
//
//		goredisbackend "github.com/distkit-go/distkit/backend/goredis"
//	)
//
//	client := redis.NewClient(&redis.Options{Addr: "127.0.0.1:6379", MaxRetries: -1})
//	defer client.Close()
//	b := goredisbackend.New(client) // b.Close does not close client
//	defer b.Close()
//	c, err := counter.NewStrict(b, counter.Options{Prefix: "shop"})
//
// Scripts run with EVALSHA and fall back to EVAL when the server answers
// NOSCRIPT; batches are pipelined (split per node on Cluster).
//
// # Retries
//
// distkit's primitives decide about retries themselves and rely on the
// driver making one attempt. go-redis retries failed commands by default
// (Options.MaxRetries = 3), which can apply a non-idempotent script twice
// after a lost reply. Give distkit a client with MaxRetries: -1 for exact
// accounting; FromURL does so.
package goredis

import (
	"context"
	"errors"
	"fmt"
	"net"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/distkit-go/distkit/backend"
	"github.com/distkit-go/distkit/backend/driver"
)

// Backend is the go-redis backend. It is safe for concurrent use.
type Backend struct {
	c      redis.UniversalClient
	owned  bool
	closed atomic.Bool

	subMu   sync.Mutex
	fan     *driver.Fanout
	ps      *redis.PubSub
	psDone  chan struct{}
	pending map[string][]chan struct{} // channels awaiting the server's confirmation
}

var (
	_ backend.Backend  = (*Backend)(nil)
	_ backend.Notifier = (*Backend)(nil)
)

// New returns a backend over the caller's client. Close does not close it.
func New(client redis.UniversalClient) *Backend {
	return &Backend{c: client}
}

// FromURL builds a client from a redis:// or rediss:// URL and returns a
// backend that owns it (Close closes it). A URL with addr= query parameters
// naming more nodes (redis://host:port?addr=host2:port2) builds a
// ClusterClient. Retries are disabled (MaxRetries -1) so each operation is
// one attempt.
func FromURL(url string) (*Backend, error) {
	if strings.Contains(url, "addr=") {
		opts, err := redis.ParseClusterURL(url)
		if err != nil {
			return nil, fmt.Errorf("goredis: %w", err)
		}
		opts.MaxRetries = -1
		return &Backend{c: redis.NewClusterClient(opts), owned: true}, nil
	}
	opts, err := redis.ParseURL(url)
	if err != nil {
		return nil, fmt.Errorf("goredis: %w", err)
	}
	opts.MaxRetries = -1
	return &Backend{c: redis.NewClient(opts), owned: true}, nil
}

// Client returns the underlying client.
func (b *Backend) Client() redis.UniversalClient { return b.c }

func args(in []string) []any {
	out := make([]any, len(in))
	for i, a := range in {
		out[i] = a
	}
	return out
}

func isNoScript(err error) bool { return redis.HasErrorPrefix(err, "NOSCRIPT") }

// EvalScript implements backend.Backend.
func (b *Backend) EvalScript(ctx context.Context, s backend.Script, keys []string, argv ...string) (backend.Value, error) {
	if err := b.usable(ctx); err != nil {
		return backend.Value{}, err
	}
	a := args(argv)
	res, err := b.c.EvalSha(ctx, s.SHA(), keys, a...).Result()
	if err != nil && isNoScript(err) {
		res, err = b.c.Eval(ctx, s.Source(), keys, a...).Result()
	}
	return convert(s.Name(), res, err)
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
	cmds := make([]*redis.Cmd, len(calls))
	pipe := b.c.Pipeline()
	for i, c := range calls {
		cmds[i] = pipe.EvalSha(ctx, c.Script.SHA(), c.Keys, args(c.Args)...)
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
			cmds[i] = pipe.Eval(ctx, c.Script.Source(), c.Keys, args(c.Args)...)
		}
		_, _ = pipe.Exec(ctx)
	}
	for i, cmd := range cmds {
		res, err := cmd.Result()
		out[i].Value, out[i].Err = convert(calls[i].Script.Name(), res, err)
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

// Close marks the backend closed and closes the client if FromURL built it.
func (b *Backend) Close() error {
	if b.closed.Swap(true) {
		return nil
	}
	b.closeSubs()
	if b.owned {
		return b.c.Close()
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

// convert maps a go-redis reply to a Value and classifies its error.
func convert(script string, res any, err error) (backend.Value, error) {
	if err != nil {
		if errors.Is(err, redis.Nil) {
			return backend.Nil(), nil
		}
		return backend.Value{}, classify(script, err)
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

func classify(script string, err error) error {
	var rerr redis.Error
	switch {
	case errors.As(err, &rerr):
		return driver.ClassifyReply(script, rerr.Error())
	case errors.Is(err, redis.ErrClosed):
		return driver.NotApplied(fmt.Errorf("%w: %w", backend.ErrClosed, err))
	case errors.Is(err, redis.ErrPoolTimeout), errors.Is(err, redis.ErrPoolExhausted):
		return driver.NotApplied(err)
	}
	var op *net.OpError
	if errors.As(err, &op) && op.Op == "dial" {
		return driver.NotApplied(err)
	}
	return driver.Indeterminate(err)
}

// Subscribe implements backend.Notifier: all channels share one go-redis
// PubSub connection; each channel is subscribed once on the server
// (confirmed before Subscribe returns) and fanned out locally.
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
			if m.Kind == "subscribe" {
				b.subMu.Lock()
				for _, ch := range b.pending[m.Channel] {
					close(ch)
				}
				delete(b.pending, m.Channel)
				b.subMu.Unlock()
			}
		}
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
		ps.Unsubscribe(uctx, channel)
	}
	if err := ps.Subscribe(ctx, channel); err != nil {
		return nil, classify("subscribe", err)
	}
	select {
	case <-ready:
		return stop, nil
	case <-ctx.Done():
		stop()
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
