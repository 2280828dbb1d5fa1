// Package benchmarks holds distkit's go test benchmarks across backends:
// the memory backend and both Redis drivers against one real redis-server
// started on a free loopback port by internal/redistest.
//
//	make bench
//
// Comparisons with other Go libraries live in benchmarks/peers, a separate
// module, so that distkit's own go.mod never depends on them.
package benchmarks
