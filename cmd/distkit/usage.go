package main

// usage is the text of --help (golden-tested: testdata/help.golden).
const usage = `distkit inspects and operates the counters, instance counters, locks and
rate limits of distkit in a live Redis (a server, a Cluster or a Sentinel
group).

Usage:
  distkit [--url URL] [--prefix P] [--json] NOUN VERB [ARGS]

Commands:
  counter get KEY...         values of counters ("-": absent)
  counter set KEY VALUE      set a counter
  counter list [PATTERN]     counters whose keys match PATTERN
  counter del KEY [--yes]    delete a counter
  counter clear [--yes]      delete every counter of the prefix
  icounter get KEY...        instance counters: cumulative, slice per instance
  icounter instances         instances: id, last heartbeat, alive, slices
  lock show NAME             holder (owner, acquisition, fencing token, TTL
                             left), readers, waiting writer, last token
  lock list [PATTERN]        locks whose names match PATTERN
  lock break NAME [--yes]    delete a lock's leases; the fencing counter is
                             kept, so the next holder's token is higher
  limit show KEY [--limit L] the rate-limit window of a key; with --limit,
                             what remains and when the next request fits
  limit reset KEY [--yes]    delete the rate-limit window of a key
  scripts load               SCRIPT LOAD every distkit script on every node
  version                    print the version of this binary

Flags (anywhere on the command line):
  --url URL         where Redis is: default $DISTKIT_URL, else
                    redis://127.0.0.1:6379
  --prefix P        the Options.Prefix the application uses (default
                    "distkit")
  --json            print one JSON document instead of a table
  --timeout D       give up after D (default 10s)
  --yes             do not ask before del, clear, break or reset
  --quoted          arguments starting with " (and --prefix) are in the
                    Go-quoted form the tables show: "job\x00\xff"
  --limit L         limit show: the limit the application passes, as
                    N/UNIT: 100/m, 10/s, 1000/h, 5000/d, 1/250ms, 5/2s
  --buckets N       limit show: the limiter's Options.Buckets (default 100)
  --dead-after D    icounter instances: the counters' Options.DeadAfter
                    (default 30s), to place the last heartbeat

URL forms:
  redis://[user:password@]host:port[/db]    a server (rediss:// for TLS)
  redis://host1:port?addr=host2:port&addr=host3:port
                                            Cluster seeds (any few nodes)
  redis://sentinel1:26379?addr=sentinel2:26379&master_set=NAME
                                            the master a Sentinel group names
  unix:///path/to/redis.sock                a server on a Unix socket

Keys, names, prefixes and patterns are the strings given to the library
(any bytes; encoded for Redis the same way). PATTERN is a glob over them:
* ? [abc] [^a] [a-z], \ quotes. Put -- before an argument starting with -.
A destructive verb asks on the terminal; without one it needs --yes.

Exit status: 0 ok, 1 not found, 2 usage error or confirmation declined,
3 backend error.
`
