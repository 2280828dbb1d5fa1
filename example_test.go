package distkit_test

import (
	"context"
	"errors"
	"fmt"
	"strings"

	"github.com/distkit-go/distkit"
	"github.com/distkit-go/distkit/backend/memory"
	"github.com/distkit-go/distkit/primitives/counter"
	"github.com/distkit-go/distkit/primitives/ratelimit"
)

// Keys are used as they are: IPv6 client addresses, "user:42". Two
// addresses that differ only in where the colons are stay two clients.
func Example_keys() {
	ctx := context.Background()
	b := memory.New(memory.Options{}) // or a Redis driver: the keys are the same
	defer b.Close()

	limiter, err := ratelimit.NewRedis(b, ratelimit.Options{})
	if err != nil {
		panic(err)
	}
	defer limiter.Close(ctx)
	perClient := limiter.Absolute()
	for _, ip := range []string{"2001:db8:0:1::", "2001:db80:1::", "2001:db8:0:1::"} {
		ok, err := perClient.Allow(ctx, ip, ratelimit.PerMinute(1)) // one request per minute and client
		fmt.Println(ip, ok, err)
	}

	users, err := counter.NewStrict(b, counter.Options{Prefix: "visits"})
	if err != nil {
		panic(err)
	}
	users.Inc(ctx, "user:42", 1)
	users.Inc(ctx, "user:4", 2)
	n, err := users.Get(ctx, "user:42")
	fmt.Println("user:42", n, err)
	// Output:
	// 2001:db8:0:1:: true <nil>
	// 2001:db80:1:: true <nil>
	// 2001:db8:0:1:: false <nil>
	// user:42 1 <nil>
}

func ExampleValidateKey() {
	for _, key := range []string{"2001:db8::1", "a{b}c", "", strings.Repeat("k", distkit.MaxKeyLen+1)} {
		err := distkit.ValidateKey("key", key)
		fmt.Println(errors.Is(err, distkit.ErrInvalidKey), err)
	}
	// Output:
	// false <nil>
	// false <nil>
	// true distkit: invalid key: key is empty
	// true distkit: invalid key: key is 1025 bytes, longer than 1024
}
