// Package backend names what every distkit primitive is built on: a
// [Backend], the connection to where the primitives keep their state.
//
// Users do not implement it. They construct one of the drivers and hand it
// to the primitives:
//
//   - backend/rueidis over a github.com/redis/rueidis client (standalone,
//     Cluster, Sentinel);
//   - backend/goredis over a github.com/redis/go-redis/v9 client (Client,
//     ClusterClient, FailoverClient);
//   - backend/memory, in-process, for tests and single-process programs.
//
// What a user does need from this package are the error classes every
// failure of a backend call is sorted into, matched with errors.Is (they are
// re-exported by the root package distkit):
//
//   - [ErrNotApplied]: the operation certainly did not run; retrying is safe.
//   - [ErrIndeterminate]: it may or may not have run (a reply lost after the
//     request was sent).
//   - [ErrScript]: it ran and raised an error (a *[ScriptError]).
//   - [ErrClosed]: the backend was closed; also matches ErrNotApplied.
//
// Writing a driver of your own is described in package backend/driver, and
// package conformance checks it.
package backend
