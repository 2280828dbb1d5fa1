package benchmarks

import (
	"os"
	"testing"

	"github.com/redis/go-redis/v9"
	rd "github.com/redis/rueidis"

	"github.com/distkit-go/distkit/backend"
	"github.com/distkit-go/distkit/backend/goredis"
	"github.com/distkit-go/distkit/backend/memory"
	"github.com/distkit-go/distkit/backend/rueidis"
	"github.com/distkit-go/distkit/internal/redistest"
)

var server struct {
	s   *redistest.Server
	err error
}

func TestMain(m *testing.M) {
	code := m.Run()
	if server.s != nil {
		server.s.Stop()
	}
	os.Exit(code)
}

func redisAddr(b *testing.B) string {
	b.Helper()
	redistest.Require(b)
	if server.s == nil && server.err == nil {
		server.s, server.err = redistest.Start(redistest.Options{})
	}
	if server.err != nil {
		b.Fatal(server.err)
	}
	return server.s.Addr
}

// backends returns the named backends for a benchmark; each is closed when
// b ends.
func backends(b *testing.B) []struct {
	name string
	new  func(b *testing.B) backend.Backend
} {
	return []struct {
		name string
		new  func(b *testing.B) backend.Backend
	}{
		{"memory", func(b *testing.B) backend.Backend { return memory.New(memory.Options{}) }},
		{"goredis", func(b *testing.B) backend.Backend {
			c := redis.NewClient(&redis.Options{Addr: redisAddr(b), MaxRetries: -1, PoolSize: 128})
			b.Cleanup(func() { c.Close() })
			d, err := goredis.New(c)
			if err != nil {
				b.Fatal(err)
			}
			b.Cleanup(func() { d.Close() })
			return d
		}},
		{"rueidis", func(b *testing.B) backend.Backend {
			c, err := rd.NewClient(rd.ClientOption{InitAddress: []string{redisAddr(b)}, DisableCache: true})
			if err != nil {
				b.Fatal(err)
			}
			b.Cleanup(c.Close)
			d, err := rueidis.New(c)
			if err != nil {
				b.Fatal(err)
			}
			return d
		}},
	}
}

// parallel64 runs op from 64 goroutines (32 per core on these 2-core
// machines) and reports allocations.
func parallel64(b *testing.B, op func() error) {
	b.ReportAllocs()
	b.SetParallelism(32)
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			if err := op(); err != nil {
				b.Error(err)
				return
			}
		}
	})
}
