// Package chaos is distkit's reliability suite (make chaos): faults
// injected through per-client TCP proxies, server crashes and a Cluster
// failover, with figures logged per scenario. Its tests carry the build tag
// "chaos" so that make test stays fast; .ci/run runs both.
package chaos
