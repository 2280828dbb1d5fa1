// Package redistest starts and stops throwaway redis-server processes and
// local Redis Clusters on free loopback ports, for distkit's tests and
// benchmarks. It never touches a Redis it did not start.
package redistest

import (
	"bufio"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
)

// Available reports why redis-server (and redis-cli) cannot be used, or nil.
func Available() error {
	for _, bin := range []string{"redis-server", "redis-cli"} {
		if _, err := exec.LookPath(bin); err != nil {
			return fmt.Errorf("redistest: %s not found on PATH (install redis-server and redis-tools)", bin)
		}
	}
	return nil
}

// Require skips t when redis-server is missing, or fails it when the CI
// environment variable is set: CI must never skip real-Redis tests.
func Require(t testing.TB) {
	t.Helper()
	if err := Available(); err != nil {
		if os.Getenv("CI") != "" {
			t.Fatalf("%v; CI is set, so this is a failure, not a skip", err)
		}
		t.Skipf("%v; skipping real-Redis test", err)
	}
}

// Options configure a Server.
type Options struct {
	AppendOnly bool     // --appendonly yes with fsync always
	Cluster    bool     // --cluster-enabled yes
	Args       []string // extra redis-server arguments

	sentinelConf string // run as a Sentinel with this config file
}

// Server is one redis-server process on 127.0.0.1.
type Server struct {
	Port int
	Addr string // 127.0.0.1:Port
	Dir  string // working directory (AOF, nodes.conf, log)

	opts   Options
	ownDir bool
	mu     sync.Mutex
	cmd    *exec.Cmd
	exited chan struct{}
}

// freePort returns a loopback port that is free now; with bus it also
// checks port+10000 (the Cluster bus port).
func freePort(bus bool) (int, error) {
	for range 50 {
		l, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			return 0, err
		}
		port := l.Addr().(*net.TCPAddr).Port
		l.Close()
		if !bus {
			return port, nil
		}
		if port+10000 > 65535 {
			continue
		}
		l2, err := net.Listen("tcp", "127.0.0.1:"+strconv.Itoa(port+10000))
		if err != nil {
			continue
		}
		l2.Close()
		return port, nil
	}
	return 0, errors.New("redistest: no free port pair found")
}

// Start launches a redis-server on a free port in a new temp dir and waits
// until it answers PING.
func Start(opts Options) (*Server, error) {
	if err := Available(); err != nil {
		return nil, err
	}
	dir, err := os.MkdirTemp("", "distkit-redis-")
	if err != nil {
		return nil, err
	}
	var lastErr error
	for range 5 { // the port may be taken between probe and bind
		port, err := freePort(opts.Cluster)
		if err != nil {
			return nil, err
		}
		s := &Server{Port: port, Addr: "127.0.0.1:" + strconv.Itoa(port), Dir: dir, opts: opts, ownDir: true}
		if lastErr = s.start(); lastErr == nil {
			return s, nil
		}
	}
	os.RemoveAll(dir)
	return nil, lastErr
}

func (s *Server) start() error {
	if s.opts.sentinelConf != "" {
		return s.launch(sentinelArgs(s.opts.sentinelConf))
	}
	args := []string{
		"--port", strconv.Itoa(s.Port), "--bind", "127.0.0.1",
		"--dir", s.Dir, "--logfile", filepath.Join(s.Dir, "redis.log"),
		"--save", "", "--daemonize", "no", "--protected-mode", "no",
	}
	if s.opts.AppendOnly {
		args = append(args, "--appendonly", "yes", "--appendfsync", "always")
	} else {
		args = append(args, "--appendonly", "no")
	}
	if s.opts.Cluster {
		args = append(args, "--cluster-enabled", "yes", "--cluster-config-file", "nodes.conf",
			"--cluster-node-timeout", "2000", "--repl-diskless-sync-delay", "0")
	}
	args = append(args, s.opts.Args...)
	return s.launch(args)
}

func (s *Server) launch(args []string) error {
	cmd := exec.Command("redis-server", args...)
	// The server dies with the test process even when that is killed.
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	if err := cmd.Start(); err != nil {
		return err
	}
	exited := make(chan struct{})
	go func() { cmd.Wait(); close(exited) }()
	s.mu.Lock()
	s.cmd, s.exited = cmd, exited
	s.mu.Unlock()
	deadline := time.Now().Add(10 * time.Second)
	for time.Now().Before(deadline) {
		select {
		case <-exited:
			return fmt.Errorf("redistest: redis-server on port %d exited at start: %s", s.Port, s.logTail())
		default:
		}
		if r, err := s.Do("PING"); err == nil && r == "PONG" {
			return nil
		}
		time.Sleep(10 * time.Millisecond)
	}
	s.Kill()
	return fmt.Errorf("redistest: redis-server on port %d did not answer PING: %s", s.Port, s.logTail())
}

func (s *Server) logTail() string {
	b, _ := os.ReadFile(filepath.Join(s.Dir, "redis.log"))
	if len(b) > 600 {
		b = b[len(b)-600:]
	}
	return strings.TrimSpace(string(b))
}

// Kill sends SIGKILL (kill -9) and waits for the process to exit. The data
// directory is kept, so Restart can bring the server back with its AOF.
func (s *Server) Kill() {
	s.mu.Lock()
	cmd, exited := s.cmd, s.exited
	s.cmd = nil
	s.mu.Unlock()
	if cmd == nil {
		return
	}
	cmd.Process.Kill()
	<-exited
}

// Pause stops the process with SIGSTOP; Resume continues it.
func (s *Server) Pause() error { return s.signal(syscall.SIGSTOP) }

// Resume continues a paused process.
func (s *Server) Resume() error { return s.signal(syscall.SIGCONT) }

func (s *Server) signal(sig syscall.Signal) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.cmd == nil {
		return errors.New("redistest: server not running")
	}
	return s.cmd.Process.Signal(sig)
}

// Restart starts the server again on the same port and directory (after
// Kill, or kills it first).
func (s *Server) Restart() error {
	s.Kill()
	var err error
	for range 20 { // the port may linger briefly
		if err = s.start(); err == nil {
			return nil
		}
		time.Sleep(50 * time.Millisecond)
	}
	return err
}

// Stop kills the server and removes its directory.
func (s *Server) Stop() {
	s.Kill()
	if s.ownDir {
		os.RemoveAll(s.Dir)
	}
}

// Do sends one command over a fresh connection and returns the reply
// rendered as text (arrays joined by newlines). An error reply is an error.
func (s *Server) Do(args ...string) (string, error) {
	r, err := s.DoAll([]string(args))
	if err != nil {
		return "", err
	}
	return r[0], nil
}

// DoAll sends commands one after another on one fresh connection (so a
// WAIT sees the writes before it) and returns their replies; it stops at
// the first error reply.
func (s *Server) DoAll(cmds ...[]string) ([]string, error) {
	conn, err := net.DialTimeout("tcp", s.Addr, time.Second)
	if err != nil {
		return nil, err
	}
	defer conn.Close()
	r := bufio.NewReader(conn)
	out := make([]string, 0, len(cmds))
	for _, args := range cmds {
		conn.SetDeadline(time.Now().Add(15 * time.Second))
		var b strings.Builder
		fmt.Fprintf(&b, "*%d\r\n", len(args))
		for _, a := range args {
			fmt.Fprintf(&b, "$%d\r\n%s\r\n", len(a), a)
		}
		if _, err := conn.Write([]byte(b.String())); err != nil {
			return out, err
		}
		reply, err := readReply(r)
		if err != nil {
			return out, err
		}
		out = append(out, reply)
	}
	return out, nil
}

func readReply(r *bufio.Reader) (string, error) {
	line, err := r.ReadString('\n')
	if err != nil {
		return "", err
	}
	line = strings.TrimRight(line, "\r\n")
	if line == "" {
		return "", errors.New("redistest: empty reply")
	}
	switch line[0] {
	case '+', ':':
		return line[1:], nil
	case '-':
		return "", errors.New(line[1:])
	case '$':
		n, _ := strconv.Atoi(line[1:])
		if n < 0 {
			return "", nil
		}
		buf := make([]byte, n+2)
		if _, err := ioReadFull(r, buf); err != nil {
			return "", err
		}
		return string(buf[:n]), nil
	case '*':
		n, _ := strconv.Atoi(line[1:])
		parts := make([]string, 0, max(n, 0))
		for range n {
			p, err := readReply(r)
			if err != nil {
				return "", err
			}
			parts = append(parts, p)
		}
		return strings.Join(parts, "\n"), nil
	}
	return "", fmt.Errorf("redistest: unexpected reply %q", line)
}

func ioReadFull(r *bufio.Reader, buf []byte) (int, error) {
	n := 0
	for n < len(buf) {
		m, err := r.Read(buf[n:])
		n += m
		if err != nil {
			return n, err
		}
	}
	return n, nil
}
