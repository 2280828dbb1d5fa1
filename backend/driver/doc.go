// Package driver is for people who write a distkit backend (a driver) or a
// primitive: the contract every driver honours, the Go twin of scripts
// ([Script], [Store]), the lease and heartbeat scripts, error
// classification and the pub/sub [Fanout]. Users of distkit do not import
// it: they construct a driver (backend/rueidis, backend/goredis or
// backend/memory) and hand it to a primitive.
//
// A primitive declares each atomic operation once, as a [Script]: Lua for
// Redis and its Go twin for the memory backend, which must agree (package
// conformance checks that they do):
//
//	// incrBy adds ARGV[1] to the integer at KEYS[1] and returns the sum. Its
//	// twin does all INCRBY does: it fails on a value that is not an integer
//	// and on an overflow, and keeps the key's TTL.
//	var incrBy = driver.NewScript("example-incrby", `return redis.call('INCRBY', KEYS[1], ARGV[1])`,
//		func(st driver.Store, keys, args []string) (backend.Value, error) {
//			notInt := errors.New("ERR value is not an integer or out of range")
//			cur, ok, err := st.Get(keys[0])
//			if err != nil {
//				return backend.Value{}, err // WRONGTYPE
//			}
//			var n int64
//			if ok {
//				if n, err = strconv.ParseInt(cur, 10, 64); err != nil {
//					return backend.Value{}, notInt
//				}
//			}
//			d, err := strconv.ParseInt(args[0], 10, 64)
//			if err != nil {
//				return backend.Value{}, notInt
//			}
//			if (d > 0 && n > math.MaxInt64-d) || (d < 0 && n < math.MinInt64-d) {
//				return backend.Value{}, errors.New("ERR increment or decrement would overflow")
//			}
//			n += d
//			ttl := time.Duration(st.PTTL(keys[0])) * time.Millisecond // negative: no expiry
//			return backend.Int(n), st.Set(keys[0], strconv.FormatInt(n, 10), ttl)
//		})
//
//	func add(ctx context.Context, b backend.Backend, key string, d int64) (int64, error) {
//		v, err := b.EvalScript(ctx, incrBy, []string{key}, strconv.FormatInt(d, 10))
//		if err != nil {
//			return 0, err
//		}
//		return v.Int64()
//	}
//
// # The driver contract
//
// A driver must implement every method of [backend.Backend] as follows.
//
//   - EvalScript runs one [Script] atomically over keys (which the caller
//     guarantees share one Cluster hash slot) with args. Redis drivers send
//     EVALSHA with [backend.Script.SHA] and, only when the server answers NOSCRIPT,
//     EVAL with [backend.Script.Source] inside the same call; a common-case call is
//     one round trip. The memory driver runs [Runner.Run] against its
//     [Store] while holding the store's lock. The result is converted to a
//     [backend.Value] following Redis's Lua conversion rules: integer → Int, bulk or
//     status string → Str, array → Arr, nil/false → Nil.
//   - A driver must not modify or retain the keys and args slices it is
//     given: primitives reuse them across calls.
//   - EvalScripts sends independent calls in as few round trips as the
//     driver can (a pipeline, DoMulti, or one lock acquisition per call).
//     Each call is atomic on its own; calls are not atomic with each other;
//     results keep input order and each carries its own error.
//   - Heartbeat, AcquireLease, RenewLease and ReleaseLease are server-timed
//     operations with the semantics of [HeartbeatScript], [AcquireLeaseScript],
//     [RenewLeaseScript] and [ReleaseLeaseScript]; a driver may implement
//     them by evaluating those scripts.
//   - Close releases what the driver itself opened (a client built by a
//     FromURL constructor), never a client the user passed in. After Close
//     every call fails with an error matching both [backend.ErrNotApplied] and
//     [backend.ErrClosed].
//
// # Errors
//
// A driver makes exactly one attempt and classifies its failure once:
//
//   - [backend.ErrNotApplied]: the operation certainly did not execute (dial refused,
//     pool closed, context done before sending, the server refused the
//     command before running it: NOSCRIPT, MOVED, CLUSTERDOWN, LOADING…).
//     Retrying is always safe.
//   - [backend.ErrIndeterminate]: the request may have executed (timeout, connection
//     reset or EOF after the request was written). Never claim ErrNotApplied
//     when the server might have applied the operation. A caller may retry a
//     non-idempotent operation after this error only when the operation
//     carries its own idempotency token.
//   - [backend.ErrScript]: the script ran and raised an error; the returned error is
//     a *[backend.ScriptError] carrying the server's message. Writes the script made
//     before raising are not rolled back, so scripts validate before writing.
//
// Retries, backoff and wrapping with user-facing context are the business of
// the primitives, not the drivers.
//
// # Optional capabilities
//
// Capabilities beyond the core are small interfaces a primitive discovers by
// type assertion, falling back to a slower path when absent: [backend.Notifier]
// (wake waiters on a channel instead of polling).
package driver
