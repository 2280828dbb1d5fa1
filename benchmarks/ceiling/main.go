// Command ceiling measures Strict.Inc throughput with 64 goroutines through
// each Redis driver against the server's own limit: redis-benchmark -P 16
// sending EVALSHA of the very same script, all against one throwaway
// redis-server on a free loopback port. It prints the ratios.
//
//	go run ./benchmarks/ceiling [-d 3s]
package main

import (
	"context"
	"flag"
	"fmt"
	"log"
	"os"
	"os/exec"
	"regexp"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/redis/go-redis/v9"
	rd "github.com/redis/rueidis"

	"github.com/distkit-go/distkit/backend"
	"github.com/distkit-go/distkit/backend/goredis"
	"github.com/distkit-go/distkit/backend/rueidis"
	"github.com/distkit-go/distkit/internal/redistest"
	"github.com/distkit-go/distkit/primitives/counter"
)

const prefix = "ceiling"

var flushDelay time.Duration

func main() {
	dur := flag.Duration("d", 3*time.Second, "how long each client runs")
	workers := flag.Int("c", 64, "goroutines")
	flag.DurationVar(&flushDelay, "flush-delay", 0, "rueidis ClientOption.MaxFlushDelay")
	flag.Parse()
	if err := run(*dur, *workers); err != nil {
		log.Fatal(err)
	}
}

func run(dur time.Duration, workers int) error {
	srv, err := redistest.Start(redistest.Options{})
	if err != nil {
		return err
	}
	defer srv.Stop()

	rc, err := rd.NewClient(rd.ClientOption{InitAddress: []string{srv.Addr}, DisableCache: true, MaxFlushDelay: flushDelay})
	if err != nil {
		return err
	}
	defer rc.Close()
	gc := redis.NewClient(&redis.Options{Addr: srv.Addr, MaxRetries: -1, PoolSize: workers})
	defer gc.Close()

	// Load the script so that redis-benchmark's EVALSHA finds it.
	s := counter.IncScript()
	if _, err := srv.Do("SCRIPT", "LOAD", s.Source()); err != nil {
		return err
	}
	ceiling, err := redisBenchmark(srv, s, workers)
	if err != nil {
		return err
	}
	results := []struct {
		name string
		b    backend.Backend
	}{{"rueidis", rueidis.New(rc)}, {"goredis", goredis.New(gc)}}
	fmt.Printf("%-34s %12s %10s\n", "Strict.Inc, "+strconv.Itoa(workers)+" goroutines", "ops/s", "of ceiling")
	fmt.Printf("%-34s %12.0f %10s\n", "redis-benchmark -P 16 EVALSHA", ceiling, "100%")
	for _, r := range results {
		ops, err := drive(r.b, dur, workers)
		if err != nil {
			return err
		}
		fmt.Printf("%-34s %12.0f %9.0f%%\n", "distkit + "+r.name, ops, 100*ops/ceiling)
	}
	ops, err := driveRaw(rc, s, dur, workers)
	if err != nil {
		return err
	}
	fmt.Printf("%-34s %12.0f %9.0f%%\n", "raw rueidis EVALSHA (floor)", ops, 100*ops/ceiling)
	return nil
}

func driveRaw(c rd.Client, s *backend.Script, dur time.Duration, workers int) (float64, error) {
	return loop(dur, workers, func(ctx context.Context) error {
		return c.Do(ctx, c.B().Evalsha().Sha1(s.SHA()).Numkeys(1).Key("{"+prefix+"}:counter").Arg("k", "1").Build()).Error()
	})
}

var rpsRe = regexp.MustCompile(`([0-9.]+) requests per second`)

func redisBenchmark(srv *redistest.Server, s *backend.Script, clients int) (float64, error) {
	cmd := exec.Command("redis-benchmark", "-h", "127.0.0.1", "-p", strconv.Itoa(srv.Port),
		"-c", strconv.Itoa(clients), "-n", "1000000", "-P", "16", "-q",
		"EVALSHA", s.SHA(), "1", "{"+prefix+"}:counter", "k", "1")
	cmd.Stderr = os.Stderr
	out, err := cmd.Output()
	if err != nil {
		return 0, fmt.Errorf("redis-benchmark: %w", err)
	}
	m := rpsRe.FindAllSubmatch(out, -1)
	if len(m) == 0 {
		return 0, fmt.Errorf("redis-benchmark: no rate in %q", out)
	}
	return strconv.ParseFloat(string(m[len(m)-1][1]), 64)
}

func drive(b backend.Backend, dur time.Duration, workers int) (float64, error) {
	c, err := counter.NewStrict(b, counter.Options{Prefix: prefix})
	if err != nil {
		return 0, err
	}
	ctx := context.Background()
	if _, err := c.Inc(ctx, "k", 1); err != nil { // warm: connections, script cache
		return 0, err
	}
	return loop(dur, workers, func(ctx context.Context) error {
		_, err := c.Inc(ctx, "k", 1)
		return err
	})
}

// loop runs op from workers goroutines for dur and returns ops per second.
func loop(dur time.Duration, workers int, op func(context.Context) error) (float64, error) {
	ctx := context.Background()
	var ops atomic.Int64
	var firstErr atomic.Pointer[error]
	var stop atomic.Bool
	var wg sync.WaitGroup
	start := time.Now()
	for range workers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			var n int64
			for !stop.Load() {
				if err := op(ctx); err != nil {
					firstErr.CompareAndSwap(nil, &err)
					break
				}
				n++
			}
			ops.Add(n)
		}()
	}
	time.Sleep(dur)
	stop.Store(true)
	wg.Wait()
	if e := firstErr.Load(); e != nil {
		return 0, *e
	}
	return float64(ops.Load()) / time.Since(start).Seconds(), nil
}
