// Command distkit inspects and operates the live state of distkit's
// primitives in Redis: counters, instance counters, locks and rate-limit
// windows. Install it with
//
//	go install github.com/distkit-go/distkit/cmd/distkit@latest
//
// and run, for a lock that seems stuck:
//
//	distkit --url redis://10.0.0.5:6379 --prefix shop lock show orders-42
//
// Run distkit --help for every command and flag. The command reads and
// writes through distkit's own packages and key layout (internal/keyspace),
// so keys, lock names, prefixes, owners and instance ids are given as the
// application gave them to the library: any bytes. A string with a NUL
// byte, which no command line can carry, is given with --quoted in the
// Go-quoted form the tables show ("job\x00\xff"); under --quoted an
// argument not starting with '"' is still taken as it is.
//
// # Connecting
//
// --url (default $DISTKIT_URL, else redis://127.0.0.1:6379) is read by the
// rueidis driver's FromURL, which accepts:
//
//	--url redis://[user:password@]host:port[/db]              one server
//	--url rediss://...                                        the same over TLS (&skip_verify to skip verification)
//	--url 'redis://host1:6379?addr=host2:6379&addr=host3:6379'  a Cluster, from any few seed nodes
//	--url 'redis://s1:26379?addr=s2:26379&master_set=mymaster'  the master a Sentinel group names
//	--url unix:///run/redis.sock                              a server on a Unix socket
//
// Query parameters also set dial_timeout, write_timeout, protocol=2 and
// client_name. A Cluster is detected by itself. With Sentinel, user and
// password apply to the master; the sentinels are asked without
// credentials.
//
// # Output
//
// By default a command prints an aligned table (or a few key: value lines)
// for people. Strings that are not printable UTF-8 without spaces are
// shown Go-quoted ("a b", "\x01\xff"). With --json it prints exactly one
// JSON document on stdout, whose field names are stable:
//
//   - times are RFC 3339 strings in UTC with milliseconds (…_at,
//     server_time: the server's clock at the snapshot); durations are
//     whole milliseconds (…_ms);
//   - every user string (prefix, pattern, key, name, owner, id,
//     instance) is a JSON string; when its bytes are not valid UTF-8
//     (which JSON cannot carry) a sibling field with the suffix _base64
//     holds them exactly.
//
// The documents, by command:
//
//	counter get|set|list   {prefix, [pattern], counters: [{key, value, exists}]}
//	counter del            {prefix, key, value (before the delete)}
//	counter clear          {prefix, cleared (how many counters)}
//	icounter get           {prefix, server_time, counters: [{key, exists, cumulative, stored, epoch,
//	                         slices: [{instance, value, alive, registered, closed}]}]}
//	icounter instances     {prefix, server_time, dead_after_ms,
//	                         instances: [{id, alive, closed, last_heartbeat_at, expires_at, slices}]}
//	lock show              {prefix, name, exists, state, holder, readers, waiters, fence, server_time}
//	lock list              {prefix, pattern, locks: [the lock show document without prefix]}
//	lock break             {prefix, name, holder (the lease removed, or null), readers_removed, fence}
//	limit show             {prefix, key, exists, server_time, window_ms, bucket_ms, count, stored_total,
//	                         [limit, capacity, remaining, retry_after_ms, release_after_ms], [note],
//	                         ttl_ms, buckets: [{start_at, count, live}]}
//	limit reset            {prefix, key, reset, stored_total (before)}
//	scripts load           {scripts: [{name, sha}], nodes: [{addr, role, loaded}]}
//	version                {version, [commit], go}
//
// In lock documents, state is "held" (an exclusive holder), "read"
// (readers only) or "free"; holder and each reader are {owner,
// acquisition, token, acquired_at, ttl_ms}, acquired_at being derived from
// the fencing token (the server time in µs at acquisition); waiters are
// {kind, owner, acquisition, ttl_ms, [position]} in queue order: the FIFO
// queue of exclusive waiters (Mutex waiters and RWMutex writers), kind
// "queued" with position 1 for the next to get the lock, and a waiting
// RWMutex writer, kind "writer" (with its position when it is in line;
// only the writer that refused last carries that mark, so another waiting
// writer shows as "queued"); waiting readers leave no trace in Redis;
// ttl_ms is until the waiter's mark lapses unless it refreshes it. fence
// is the last token issued for the name. An instance counter's
// cumulative is what the next operation will return (stored minus the
// slices of dead instances, which that operation removes first). An
// instance whose counter closed stays listed until its expires_at, with
// closed true and alive false (table: "no (closed)"); its
// last_heartbeat_at is then when it closed (its last heartbeat with
// KeepSlicesOnClose, whose slices stay counted until expires_at).
//
// # What the backend does not store
//
// A rate limit (ratelimit.Limit) is passed by the application on every
// call, not stored in Redis; the window stores only its geometry (bucket
// size and buckets per window), which limit show uses to place the buckets
// in time. Given --limit (the Limit's text form, e.g. 100/m) and, if the
// application sets Options.Buckets, --buckets, limit show asks the
// library's own Peek what remains and when the next request fits (reading
// only), and notes when the stored geometry is not the one that limit
// gives (the limiter would then re-date the window to now). An instance
// counter's DeadAfter is an option too: icounter instances takes
// --dead-after (default 30 s) to turn an instance's expiry into its last
// heartbeat. Whether an instance is alive does not depend on it.
//
// # Changing state
//
// counter set, del and clear go through the library's Strict counter.
// lock break deletes the leases it just showed — the exclusive holder's if
// it is still the same acquisition, and the read leases still present —
// never a lease taken in between, and never the fencing counter, so the
// next holder's token is higher than every earlier one. It publishes a
// release so waiters retry at once. The broken holders learn it at their
// next renewal (their guard becomes Lost). limit reset deletes the key's
// window with the library's Reset (a Hybrid instance elsewhere still
// pushes what it admitted and not yet pushed).
//
// del, clear, break and reset ask for confirmation on stderr and read the
// answer from stdin; anything but y or yes declines. When stdin is not a
// terminal they refuse unless --yes is given, so a script must say --yes.
// --timeout bounds the work with the backend, not the time the question
// waits for its answer: the change confirmed gets a fresh --timeout.
//
// # Exit status
//
//	0  done
//	1  not found: a key, lock or window that does not exist, or a lease
//	   that changed before lock break could remove it (with --json the
//	   document is printed all the same)
//	2  usage: a bad command line, an invalid key, a declined or impossible
//	   confirmation
//	3  backend: Redis unreachable, a timeout (--timeout, default 10 s), an
//	   error reply, or stored data not in distkit's layout
//
// Messages go to stderr; stdout carries only the table or the document.
package main
