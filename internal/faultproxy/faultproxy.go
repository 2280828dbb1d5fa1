// Package faultproxy is a small in-process TCP proxy for fault injection in
// distkit's reliability tests. Faults:
//
//   - Latency / ReplyLatency: every chunk (or only server→client chunks) is
//     delayed;
//   - Blackhole: connections stay open but every byte is dropped; a
//     connection that lost bytes is reset when the blackhole ends (TCP never
//     delivers a stream with a hole in it, so neither does the proxy);
//   - Cut: connections are reset and the listener closed, so that new
//     connections are refused (ECONNREFUSED) until Restore listens again;
//   - DropReplyTo(marker): the next request containing marker reaches the
//     server, its reply is discarded and the connection reset (the server
//     executed, the client never hears of it);
//   - ResetBeforeWrite(marker): the next request containing marker is not
//     forwarded; the connection is reset instead (the server never sees it).
//
// One proxy per simulated client lets a test partition one client alone; a
// Set keeps one proxy per server address and gives clients a dial function
// that routes every address through its proxy.
//
// We wrote our own rather than embedding toxiproxy: the tests need a few
// behaviours, and a small proxy keeps the module's dependency graph (and
// CI's download) small and the faults deterministic under our control.
package faultproxy

import (
	"bytes"
	"context"
	"errors"
	"io"
	"net"
	"sync"
	"time"
)

// Proxy forwards one loopback listener to a target address.
type Proxy struct {
	Addr   string
	Target string
	ln     net.Listener

	mu        sync.Mutex
	pairs     map[*pair]struct{}
	cut       bool
	blackhole bool
	latency   time.Duration
	replyLat  time.Duration
	dropReply [][]byte // one-shot markers
	resetReq  [][]byte // one-shot markers
	closed    bool
	wg        sync.WaitGroup
}

// pair is one proxied connection: the client side and the server side.
type pair struct {
	client, server net.Conn
	mu             sync.Mutex
	dropNext       bool // discard the next reply and reset
	lost           bool // bytes were dropped by a blackhole
}

// Start listens on a free loopback port and forwards to target.
func Start(target string) (*Proxy, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, err
	}
	p := &Proxy{Addr: ln.Addr().String(), Target: target, ln: ln, pairs: map[*pair]struct{}{}}
	p.wg.Add(1)
	go p.accept(ln)
	return p, nil
}

func (p *Proxy) accept(ln net.Listener) {
	defer p.wg.Done()
	for {
		c, err := ln.Accept()
		if err != nil {
			return
		}
		p.mu.Lock()
		refuse := p.cut || p.closed
		p.mu.Unlock()
		if refuse {
			reset(c)
			continue
		}
		up, err := net.DialTimeout("tcp", p.Target, time.Second)
		if err != nil {
			reset(c)
			continue
		}
		pr := &pair{client: c, server: up}
		p.mu.Lock()
		if p.closed || p.cut {
			p.mu.Unlock()
			reset(c)
			reset(up)
			continue
		}
		p.pairs[pr] = struct{}{}
		p.mu.Unlock()
		p.wg.Add(2)
		go p.pipe(pr, true)
		go p.pipe(pr, false)
	}
}

// reset closes c with RST rather than FIN.
func reset(c net.Conn) {
	if tc, ok := c.(*net.TCPConn); ok {
		tc.SetLinger(0)
	}
	c.Close()
}

func (pr *pair) reset() {
	reset(pr.client)
	reset(pr.server)
}

// takeMarker removes and reports the first armed marker found in b.
func takeMarker(list *[][]byte, b []byte) bool {
	for i, m := range *list {
		if bytes.Contains(b, m) {
			*list = append((*list)[:i], (*list)[i+1:]...)
			return true
		}
	}
	return false
}

// pipe copies one direction of pr: client→server when up.
func (p *Proxy) pipe(pr *pair, up bool) {
	defer p.wg.Done()
	from, to := pr.server, pr.client
	if up {
		from, to = pr.client, pr.server
	}
	buf := make([]byte, 32<<10)
	for {
		n, err := from.Read(buf)
		if n > 0 {
			chunk := buf[:n]
			p.mu.Lock()
			drop, lat := p.blackhole, p.latency
			var resetNow, armDrop bool
			if up {
				resetNow = takeMarker(&p.resetReq, chunk)
				if !resetNow {
					armDrop = takeMarker(&p.dropReply, chunk)
				}
			} else {
				lat += p.replyLat
			}
			p.mu.Unlock()
			if resetNow {
				pr.reset()
				p.forget(pr)
				return
			}
			if lat > 0 {
				time.Sleep(lat)
			}
			pr.mu.Lock()
			if armDrop {
				pr.dropNext = true
			}
			dropReply := !up && pr.dropNext
			if drop {
				pr.lost = true
			}
			pr.mu.Unlock()
			if dropReply {
				pr.reset()
				p.forget(pr)
				return
			}
			if !drop {
				if _, werr := to.Write(chunk); werr != nil {
					err = werr
				}
			}
		}
		if err != nil {
			if !errors.Is(err, io.EOF) {
				reset(to)
			} else {
				to.Close()
			}
			p.forget(pr)
			return
		}
	}
}

func (p *Proxy) forget(pr *pair) {
	p.mu.Lock()
	delete(p.pairs, pr)
	p.mu.Unlock()
}

// Latency delays every chunk forwarded in either direction by d (0 = off).
func (p *Proxy) Latency(d time.Duration) {
	p.mu.Lock()
	p.latency = d
	p.mu.Unlock()
}

// ReplyLatency delays every server→client chunk by d (0 = off): requests
// reach the server at once, their replies late.
func (p *Proxy) ReplyLatency(d time.Duration) {
	p.mu.Lock()
	p.replyLat = d
	p.mu.Unlock()
}

// Blackhole keeps connections open but drops every byte (true), or
// forwards again (false); connections that lost bytes are reset then.
func (p *Proxy) Blackhole(on bool) {
	p.mu.Lock()
	p.blackhole = on
	var lost []*pair
	if !on {
		lost = p.lostPairs()
	}
	p.mu.Unlock()
	for _, pr := range lost {
		pr.reset()
	}
}

func (p *Proxy) lostPairs() []*pair {
	var out []*pair
	for pr := range p.pairs {
		pr.mu.Lock()
		if pr.lost {
			out = append(out, pr)
		}
		pr.mu.Unlock()
	}
	return out
}

// DropReplyTo arms a one-shot fault: the next request chunk that contains
// marker is forwarded, and the server's next reply on that connection is
// discarded and the connection reset.
func (p *Proxy) DropReplyTo(marker string) {
	p.mu.Lock()
	p.dropReply = append(p.dropReply, []byte(marker))
	p.mu.Unlock()
}

// ResetBeforeWrite arms a one-shot fault: the next request chunk that
// contains marker is not forwarded; its connection is reset.
func (p *Proxy) ResetBeforeWrite(marker string) {
	p.mu.Lock()
	p.resetReq = append(p.resetReq, []byte(marker))
	p.mu.Unlock()
}

// Cut resets every connection and refuses new ones (the listener is
// closed) until Restore.
func (p *Proxy) Cut() {
	p.mu.Lock()
	p.cut = true
	ln := p.ln
	p.ln = nil
	p.mu.Unlock()
	if ln != nil {
		ln.Close()
	}
	p.ResetAll()
}

// ResetAll resets every open connection (new ones are still accepted).
func (p *Proxy) ResetAll() {
	p.mu.Lock()
	pairs := make([]*pair, 0, len(p.pairs))
	for pr := range p.pairs {
		pairs = append(pairs, pr)
	}
	p.mu.Unlock()
	for _, pr := range pairs {
		pr.reset()
	}
}

// Restore ends Cut and Blackhole, removes latency and disarms one-shot
// faults; connections that lost bytes in a blackhole are reset.
func (p *Proxy) Restore() {
	p.mu.Lock()
	p.cut, p.blackhole, p.latency, p.replyLat = false, false, 0, 0
	p.dropReply, p.resetReq = nil, nil
	lost := p.lostPairs()
	if p.ln == nil && !p.closed {
		// Listen again on the same address (it may linger briefly).
		for i := 0; i < 100; i++ {
			ln, err := net.Listen("tcp", p.Addr)
			if err == nil {
				p.ln = ln
				p.wg.Add(1)
				go p.accept(ln)
				break
			}
			time.Sleep(10 * time.Millisecond)
		}
	}
	p.mu.Unlock()
	for _, pr := range lost {
		pr.reset()
	}
}

// Close stops the proxy and waits for its goroutines.
func (p *Proxy) Close() {
	p.mu.Lock()
	p.closed = true
	p.mu.Unlock()
	p.Cut()
	p.wg.Wait()
}

// Set keeps one proxy per server address. Its Dial routes a connection to
// a known address through that address's proxy, and any other address
// directly.
type Set struct {
	mu      sync.Mutex
	proxies map[string]*Proxy // by target
	closed  bool
}

// NewSet returns a Set with a proxy in front of each target.
func NewSet(targets ...string) (*Set, error) {
	s := &Set{proxies: map[string]*Proxy{}}
	for _, t := range targets {
		if _, err := s.Add(t); err != nil {
			s.Close()
			return nil, err
		}
	}
	return s, nil
}

// Add starts a proxy in front of target (or returns the existing one).
func (s *Set) Add(target string) (*Proxy, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if p := s.proxies[target]; p != nil {
		return p, nil
	}
	if s.closed {
		return nil, errors.New("faultproxy: set closed")
	}
	p, err := Start(target)
	if err != nil {
		return nil, err
	}
	s.proxies[target] = p
	return p, nil
}

// Get returns the proxy of target, or nil.
func (s *Set) Get(target string) *Proxy {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.proxies[target]
}

// All returns every proxy.
func (s *Set) All() []*Proxy {
	s.mu.Lock()
	defer s.mu.Unlock()
	out := make([]*Proxy, 0, len(s.proxies))
	for _, p := range s.proxies {
		out = append(out, p)
	}
	return out
}

// Each applies f to every proxy.
func (s *Set) Each(f func(*Proxy)) {
	for _, p := range s.All() {
		f(p)
	}
}

// Dial connects to addr through its proxy when the Set has one, else
// directly. It has the signature of go-redis's Options.Dialer.
func (s *Set) Dial(ctx context.Context, network, addr string) (net.Conn, error) {
	if p := s.Get(addr); p != nil {
		addr = p.Addr
	}
	var d net.Dialer
	return d.DialContext(ctx, network, addr)
}

// Close closes every proxy.
func (s *Set) Close() {
	s.mu.Lock()
	s.closed = true
	ps := make([]*Proxy, 0, len(s.proxies))
	for _, p := range s.proxies {
		ps = append(ps, p)
	}
	s.mu.Unlock()
	for _, p := range ps {
		p.Close()
	}
}

// DropReplyTo arms DropReplyTo(marker) on every proxy of the set.
func (s *Set) DropReplyTo(marker string) { s.Each(func(p *Proxy) { p.DropReplyTo(marker) }) }

// ResetBeforeWrite arms ResetBeforeWrite(marker) on every proxy of the set.
func (s *Set) ResetBeforeWrite(marker string) {
	s.Each(func(p *Proxy) { p.ResetBeforeWrite(marker) })
}

// ReplyLatency sets ReplyLatency(d) on every proxy of the set.
func (s *Set) ReplyLatency(d time.Duration) { s.Each(func(p *Proxy) { p.ReplyLatency(d) }) }

// Blackhole sets Blackhole(on) on every proxy of the set.
func (s *Set) Blackhole(on bool) { s.Each(func(p *Proxy) { p.Blackhole(on) }) }

// Cut cuts every proxy of the set.
func (s *Set) Cut() { s.Each(func(p *Proxy) { p.Cut() }) }

// Restore restores every proxy of the set.
func (s *Set) Restore() { s.Each(func(p *Proxy) { p.Restore() }) }
