// Package backend names what every distkit primitive is built on: a
// [Backend], the connection to where the primitives keep their state, and
// the classes its failures are sorted into.
//
//	func countOrder(ctx context.Context, b backend.Backend) error {
//		c, err := counter.NewStrict(b, counter.Options{Prefix: "shop"})
//		if err != nil {
//			return err
//		}
//		_, err = c.Inc(ctx, "orders", 1)
//		switch {
//		case errors.Is(err, backend.ErrNotApplied):
//			// certainly not counted: retrying is safe
//			_, err = c.Inc(ctx, "orders", 1)
//		case errors.Is(err, backend.ErrIndeterminate):
//			// maybe counted: retrying could count twice
//		}
//		return err
//	}
//
// Users do not implement Backend. They construct one of the drivers and
// hand it to the primitives:
//
//   - backend/rueidis over a github.com/redis/rueidis client (standalone,
//     Cluster, Sentinel);
//   - backend/goredis over a github.com/redis/go-redis/v9 client (Client,
//     ClusterClient, FailoverClient);
//   - backend/memory, in process, for tests and single-process programs.
//
// What a user does need from this package are the error classes every
// failure of a backend call is sorted into, matched with errors.Is (the
// root package distkit re-exports them):
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
