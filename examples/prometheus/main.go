// Command prometheus serves distkit's OpenTelemetry metrics in the
// Prometheus text format, through the OpenTelemetry Prometheus exporter,
// while a small workload runs on the memory backend: a Lax counter, a lock
// and a Hybrid limiter, over a backend wrapped by otelbackend. It is its
// own module so that distkit does not depend on Prometheus.
//
//	cd examples/prometheus && go run . -addr 127.0.0.1:9464 &
//	curl -s http://127.0.0.1:9464/metrics | grep '^distkit_'
//
// With -once it runs the workload once, prints the distkit series of the
// scrape to stdout and exits.
package main

import (
	"bufio"
	"context"
	"flag"
	"fmt"
	"log"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"os"
	"strings"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"
	otelprom "go.opentelemetry.io/otel/exporters/prometheus"
	sdkmetric "go.opentelemetry.io/otel/sdk/metric"

	"github.com/distkit-go/distkit/backend/memory"
	"github.com/distkit-go/distkit/backend/otelbackend"
	"github.com/distkit-go/distkit/primitives/counter"
	"github.com/distkit-go/distkit/primitives/lock"
	"github.com/distkit-go/distkit/primitives/ratelimit"
)

func main() {
	addr := flag.String("addr", "127.0.0.1:9464", "listen address of /metrics")
	once := flag.Bool("once", false, "run the workload once, print the distkit series and exit")
	flag.Parse()

	reg := prometheus.NewRegistry()
	exp, err := otelprom.New(otelprom.WithRegisterer(reg))
	if err != nil {
		log.Fatal(err)
	}
	mp := sdkmetric.NewMeterProvider(sdkmetric.WithReader(exp))
	ctx := context.Background()
	defer mp.Shutdown(ctx)
	logger := slog.New(slog.NewTextHandler(os.Stderr, nil))

	mem := memory.New(memory.Options{})
	defer mem.Close()
	b := otelbackend.Wrap(mem, otelbackend.Options{MeterProvider: mp})
	lax, err := counter.NewLax(b, counter.Options{Prefix: "shop", Logger: logger, MeterProvider: mp})
	if err != nil {
		log.Fatal(err)
	}
	defer lax.Close(ctx)
	m, err := lock.NewMutex(b, "checkout", lock.Options{Prefix: "shop", Logger: logger, MeterProvider: mp})
	if err != nil {
		log.Fatal(err)
	}
	h, err := ratelimit.NewHybrid(b, ratelimit.Options{Prefix: "shop", Logger: logger, MeterProvider: mp})
	if err != nil {
		log.Fatal(err)
	}
	defer h.Close(ctx)
	work := func() {
		for i := range 50 {
			lax.Inc(ctx, fmt.Sprintf("page-%d", i%5), 1)
			h.Absolute().Inc(ctx, "client-1", ratelimit.PerMinute(30), 1)
		}
		if g, err := m.Lock(ctx); err == nil {
			g.Release(ctx)
		}
		lax.Flush(ctx)
	}
	handler := promhttp.HandlerFor(reg, promhttp.HandlerOpts{})

	if *once {
		work()
		srv := httptest.NewServer(handler)
		defer srv.Close()
		resp, err := http.Get(srv.URL)
		if err != nil {
			log.Fatal(err)
		}
		defer resp.Body.Close()
		sc := bufio.NewScanner(resp.Body)
		for sc.Scan() {
			if line := sc.Text(); strings.HasPrefix(line, "distkit_") {
				fmt.Println(line)
			}
		}
		return
	}
	go func() {
		for range time.Tick(time.Second) {
			work()
		}
	}()
	http.Handle("/metrics", handler)
	log.Printf("serving http://%s/metrics", *addr)
	log.Fatal(http.ListenAndServe(*addr, nil))
}
