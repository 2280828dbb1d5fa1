package benchmarks

import (
	"context"
	"testing"

	"github.com/redis/go-redis/v9"

	"github.com/distkit-go/distkit/backend/goredis"
	"github.com/distkit-go/distkit/primitives/lock"
)

// BenchmarkMutexFloorSetNX is the floor of an uncontended lock: SET NX PX
// and an owner-checked delete script on the same go-redis client, what
// redsync and redislock do. Compare with BenchmarkMutexVsFloorDistkit in
// the same run: loopback latency on shared machines varies more between
// runs than the two differ.
func BenchmarkMutexFloorSetNX(b *testing.B) {
	ctx := context.Background()
	c := redis.NewClient(&redis.Options{Addr: redisAddr(b), MaxRetries: -1})
	defer c.Close()
	rel := redis.NewScript(`if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('DEL', KEYS[1]) end return 0`)
	for b.Loop() {
		c.SetNX(ctx, "{floor}:l", "v", 30e9)
		rel.Run(ctx, c, []string{"{floor}:l"}, "v")
	}
}

// BenchmarkMutexVsFloorDistkit is distkit's Lock+Release on that client.
func BenchmarkMutexVsFloorDistkit(b *testing.B) {
	ctx := context.Background()
	c := redis.NewClient(&redis.Options{Addr: redisAddr(b), MaxRetries: -1})
	defer c.Close()
	d, err := goredis.New(c)
	if err != nil {
		b.Fatal(err)
	}
	defer d.Close()
	m, _ := lock.NewMutex(d, "floor", lock.Options{})
	for b.Loop() {
		g, _ := m.Lock(ctx)
		g.Release(ctx)
	}
}
