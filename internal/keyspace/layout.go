package keyspace

// Every layout below takes the user's strings as given (validated, not yet
// escaped) and escapes them itself; the package docs of the primitives
// show the same layouts with <prefix>, <key>… standing for escaped parts.

// Counter (primitives/counter): every counter of a prefix is one field of
// one hash, so Clear is one DEL and every script touches one slot.
//
//	{<prefix>}:counter               hash    <key> → decimal int64
//	{<prefix>}:laxseq:<instance>     string  last Lax flush batch applied[:refused pair indexes] (TTL DedupTTL)

// CounterHash is the hash holding every counter of prefix.
func CounterHash(prefix string) string { return tag(Escape(prefix)) + Sep + "counter" }

// CounterField is key's field in CounterHash.
func CounterField(key string) string { return Escape(key) }

// CounterLaxMarker is the batch marker of one Lax counter instance.
func CounterLaxMarker(prefix, instance string) string {
	return Join(tag(Escape(prefix)), "laxseq", Escape(instance))
}

// InstanceCounterKeys are the keys of one prefix's instance counters
// (primitives/instancecounter), all in the slot of {<prefix>}:
//
//	{<prefix>}:ic:instances      zset    <id> → heartbeat expiry (Unix ms)
//	{<prefix>}:ic:total          hash    <key> → cumulative value
//	{<prefix>}:ic:slices         hash    <id>:<key> → that instance's slice
//	{<prefix>}:ic:owned          zset    <id>:<key>, score 0 (lexical index per instance)
//	{<prefix>}:ic:holders        zset    <key>:<id>, score 0 (lexical index per key)
//	{<prefix>}:ic:epochs         hash    <key> → epoch: stamp of its last Set or Del
//	{<prefix>}:ic:registry       hash    <id> → "<nonce>:<version>" of the live counter holding the id
//	{<prefix>}:ic:rejoined       hash    <id>:<key> → part of that slice a rejoin re-contributed that may date from before the data set
//	{<prefix>}:ic:cleared        string  stamp of the last Clear
//	{<prefix>}:ic:clock          string  "<last>:<born>": the last stamp (server time in µs, strictly increasing)
//	                                     and the first stamp of the data set (a server that lost its data starts another)
//	{<prefix>}:ic:seq:<id>       string  "<nonce>:<batch>:<stamp>": last Lax batch applied (TTL DedupTTL),
//	                                     then ":o<key>"/":x<key>" per key a rejoin refused in it
type InstanceCounterKeys struct {
	Instances, Total, Slices, Owned, Holders, Epochs, Registry, Rejoined, Cleared, Clock string
}

// InstanceCounter returns the keys of prefix's instance counters.
func InstanceCounter(prefix string) InstanceCounterKeys {
	t := tag(Escape(prefix)) + Sep + "ic" + Sep
	return InstanceCounterKeys{
		Instances: t + "instances", Total: t + "total", Slices: t + "slices",
		Owned: t + "owned", Holders: t + "holders", Epochs: t + "epochs",
		Registry: t + "registry", Rejoined: t + "rejoined", Cleared: t + "cleared", Clock: t + "clock",
	}
}

// List returns the keys in the order the instance-counter scripts take
// them as KEYS[1..10].
func (k InstanceCounterKeys) List() []string {
	return []string{k.Instances, k.Total, k.Slices, k.Owned, k.Holders, k.Epochs, k.Registry, k.Rejoined, k.Cleared, k.Clock}
}

// InstanceCounterMarker is the Lax batch marker of instance id.
func InstanceCounterMarker(prefix, id string) string {
	return Join(tag(Escape(prefix)), "ic", "seq", Escape(id))
}

// InstanceMember is instance id's member of the instances zset (and the
// id the scripts receive).
func InstanceMember(id string) string { return Escape(id) }

// InstanceKeyField is key's field in the total and epochs hashes (and the
// key the scripts receive).
func InstanceKeyField(key string) string { return Escape(key) }

// InstanceSlice is the field of id's slice of key in the slices hash and
// its member of the owned zset: <id>:<key>. The scripts compose it from
// their escaped arguments with Join, and scan one instance's slices over
// LexRange(<id>).
func InstanceSlice(id, key string) string { return Join(Escape(id), Escape(key)) }

// InstanceHolder is the member of the holders zset that says id holds a
// slice of key: <key>:<id>, scanned per key over LexRange(<key>).
func InstanceHolder(key, id string) string { return Join(Escape(key), Escape(id)) }

// LockKeys are the keys of one lock (primitives/lock), all in the slot of
// {<prefix>:<name>}:
//
//	{<prefix>:<name>}:lock      string  exclusive holder <owner>:<nonce>:<token> (PX TTL)
//	{<prefix>:<name>}:readers   zset    read leases <owner>:<nonce>:<token> → expiry (Unix ms)
//	{<prefix>:<name>}:wwait     string  a waiting writer <owner>:<nonce> (PX 3×RetryInterval)
//	{<prefix>:<name>}:fence     string  the last fencing token (never expires)
//	{<prefix>:<name>}:waiters   string  "1" while someone waits for the lock (PX 3×RetryInterval, at least 150 ms)
//	{<prefix>:<name>}:queue     zset    waiting writers and Mutex waiters <owner>:<nonce> → arrival order (≥ Unix µs)
//	{<prefix>:<name>}:qexp      zset    the same waiters → mark expiry (Unix ms)
//	{<prefix>:<name>}:released  channel a message per release while someone waits
type LockKeys struct {
	Lock, Readers, WaitingWriter, Fence, Waiters, Queue, QueueExpiry, Channel string
}

// Lock returns the keys of the lock name under prefix.
func Lock(prefix, name string) LockKeys {
	t := tag(Escape(prefix), Escape(name)) + Sep
	return LockKeys{Lock: t + "lock", Readers: t + "readers", WaitingWriter: t + "wwait", Fence: t + "fence", Waiters: t + "waiters", Queue: t + "queue", QueueExpiry: t + "qexp", Channel: t + "released"}
}

// LockAcquisition is the id of one acquisition by owner: <owner>:<nonce>,
// where nonce is distkit's own (base-36 digits). Lock values and reader
// members are the id, ':' and the fencing token; scripts find an
// acquisition's lease by the prefix <owner>:<nonce>: .
func LockAcquisition(owner, nonce string) string { return Join(Escape(owner), nonce) }

// RateLimitKeys are the keys of one rate-limited key (primitives/ratelimit),
// in the slot of {<prefix>:<key>}:
//
//	{<prefix>:<key>}:rl:counts   hash   bucket index → count, "t" → window total,
//	                                    "g" → "B/nb" (bucket ms / buckets per window) (PX window + bucket)
//	{<prefix>:<key>}:rl:index    zset   bucket indexes (PX window + bucket)
type RateLimitKeys struct {
	Counts, Index string
}

// RateLimit returns the keys of key under prefix.
func RateLimit(prefix, key string) RateLimitKeys {
	t := Join(tag(Escape(prefix), Escape(key)), "rl") + Sep
	return RateLimitKeys{Counts: t + "counts", Index: t + "index"}
}

// List returns the keys in the order the window script takes them.
func (k RateLimitKeys) List() []string { return []string{k.Counts, k.Index} }

// SemaphoreKeys are the keys of one semaphore (primitives/semaphore), all
// in the slot of {<prefix>:<name>} (the lock's tag: the "sem" part keeps
// them apart from a lock of the same name):
//
//	{<prefix>:<name>}:sem:holders   zset    permits <owner>:<nonce>:<n>:<token> → expiry (Unix ms)
//	{<prefix>:<name>}:sem:queue     zset    waiters <owner>:<nonce> → arrival order (above every score in line, ≥ Unix µs)
//	{<prefix>:<name>}:sem:qexp      zset    waiters <owner>:<nonce> → mark expiry (Unix ms)
//	{<prefix>:<name>}:sem:fence     string  the last fencing token (never expires)
//	{<prefix>:<name>}:sem:gone      zset    given-up acquisitions <owner>:<nonce> → tombstone expiry (Unix ms)
//	{<prefix>:<name>}:sem:released  channel a message per release, dequeue and queue advance
type SemaphoreKeys struct {
	Holders, Queue, QueueExpiry, Fence, Gone, Channel string
}

// Semaphore returns the keys of the semaphore name under prefix.
func Semaphore(prefix, name string) SemaphoreKeys {
	t := Join(tag(Escape(prefix), Escape(name)), "sem") + Sep
	return SemaphoreKeys{Holders: t + "holders", Queue: t + "queue", QueueExpiry: t + "qexp", Fence: t + "fence", Gone: t + "gone", Channel: t + "released"}
}

// ElectionKeys are the keys of one election (primitives/election), in the
// slot of {<prefix>:<name>}:
//
//	{<prefix>:<name>}:elect:leader   hash    id → <owner>:<nonce>, token → decimal, value → the leader's value (PX TTL)
//	{<prefix>:<name>}:elect:fence    string  the last term's token (never expires)
//	{<prefix>:<name>}:elect:changed  channel a message per election, resignation and proclamation
type ElectionKeys struct {
	Leader, Fence, Channel string
}

// Election returns the keys of the election name under prefix.
func Election(prefix, name string) ElectionKeys {
	t := Join(tag(Escape(prefix), Escape(name)), "elect") + Sep
	return ElectionKeys{Leader: t + "leader", Fence: t + "fence", Channel: t + "changed"}
}
