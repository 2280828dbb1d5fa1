package testkit

import (
	"errors"
	"strconv"

	"github.com/distkit-go/distkit/backend"
	"github.com/distkit-go/distkit/backend/driver"
)

// Test scripts, each with its Go twin.
var (
	// TypesScript returns one value of every kind Lua can produce.
	TypesScript = driver.NewScript("conf-types", `
return {42, 'text', false, {1, 'nested'}, true, -7, ARGV[1], 3.9}
`, func(_ driver.Store, _, args []string) (backend.Value, error) {
		// Lua false inside an array becomes nil; true becomes 1; 3.9 truncates to 3.
		return backend.Arr(backend.Int(42), backend.Str("text"), backend.Nil(),
			backend.Arr(backend.Int(1), backend.Str("nested")), backend.Int(1), backend.Int(-7),
			backend.Str(args[0]), backend.Int(3)), nil
	})

	RaiseScript = driver.NewScript("conf-raise", `return redis.error_reply('DKTEST ' .. ARGV[1])`,
		func(_ driver.Store, _, args []string) (backend.Value, error) {
			return backend.Value{}, errors.New("DKTEST " + args[0])
		})

	// BumpScript is a read-modify-write that only stays exact if scripts
	// run atomically.
	BumpScript = driver.NewScript("conf-bump", `
local v = tonumber(redis.call('GET', KEYS[1]) or '0') + 1
redis.call('SET', KEYS[1], tostring(v))
return v
`, func(st driver.Store, keys, _ []string) (backend.Value, error) {
		s, _, err := st.Get(keys[0])
		if err != nil {
			return backend.Value{}, err
		}
		n, _ := strconv.ParseInt(s, 10, 64)
		n++
		return backend.Int(n), st.Set(keys[0], strconv.FormatInt(n, 10), 0)
	})

	EchoScript = driver.NewScript("conf-echo", `return ARGV[1]`,
		func(_ driver.Store, _, args []string) (backend.Value, error) {
			return backend.Str(args[0]), nil
		})

	// WrongTypeScript runs HINCRBY on a string key: a server-side error.
	WrongTypeScript = driver.NewScript("conf-wrongtype", `
redis.call('SET', KEYS[1], 'x')
return redis.call('HINCRBY', KEYS[1], 'f', 1)
`, func(st driver.Store, keys, _ []string) (backend.Value, error) {
		if err := st.Set(keys[0], "x", 0); err != nil {
			return backend.Value{}, err
		}
		return backend.Value{}, st.HSet(keys[0], "f", "1")
	})

	// DelKeyScript deletes KEYS[1] behind a primitive's back.
	DelKeyScript = driver.NewScript("conf-del", `return redis.call('DEL', KEYS[1])`,
		func(st driver.Store, keys, _ []string) (backend.Value, error) {
			return backend.Int(int64(st.Del(keys...))), nil
		})
)

// HSetScript writes ARGV[2] into field ARGV[1] of hash KEYS[1] behind a
// primitive's back (for example a value that is not an integer).
var HSetScript = driver.NewScript("conf-hset", `return redis.call('HSET', KEYS[1], ARGV[1], ARGV[2])`,
	func(st driver.Store, keys, args []string) (backend.Value, error) {
		return backend.Int(1), st.HSet(keys[0], args[0], args[1])
	})
