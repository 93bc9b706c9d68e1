// Command ginapp is sluice's example: a Gin service in front of an LLM vendor
// with the whole stack. Run it with -demo to watch it hold an overload burst.
//
//	go run ./examples/ginapp          # serve on SLUICE_ADDR (127.0.0.1:8080)
//	go run ./examples/ginapp -demo    # start it, drive a burst, print a table
//
// Configuration is by environment; see docs/example-app.md.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"log"
	"net"
	"net/http"
	"os"
	"os/signal"
	"syscall"
	"time"
)

func main() {
	demo := flag.Bool("demo", false, "start the app and a fake vendor, drive an overload burst and print what happened")
	demoFor := flag.Duration("demo-duration", 6*time.Second, "how long the demo burst lasts")
	flag.Parse()
	if err := run(*demo, *demoFor); err != nil {
		fmt.Fprintln(os.Stderr, "ginapp:", err)
		os.Exit(1)
	}
}

func run(demo bool, demoFor time.Duration) error {
	getenv := environ
	if demo {
		getenv = demoEnv(environ)
	}
	cfg, err := LoadConfig(getenv)
	if err != nil {
		return err
	}
	if demo {
		return runDemo(cfg, demoFor, os.Stdout)
	}
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, os.Interrupt)
	defer stop()
	app, err := NewApp(ctx, cfg)
	if err != nil {
		return err
	}
	ln, err := net.Listen("tcp", cfg.Addr)
	if err != nil {
		return fmt.Errorf("listen on SLUICE_ADDR=%s: %w", cfg.Addr, err)
	}
	log.Printf("ginapp: listening on http://%s, vendor %s", ln.Addr(), app.vendorURL)
	return serve(ctx, app, ln)
}

// newServer is the app's http.Server: bounded header read time and header
// size (a request past MaxHeaderBytes gets 431); the body limit is the chat
// handler's (413).
func newServer(app *App) *http.Server {
	return &http.Server{Handler: app.Handler(), ReadHeaderTimeout: 10 * time.Second,
		MaxHeaderBytes: 64 << 10}
}

// serve runs until ctx ends (SIGTERM), then shuts down gracefully: it stops
// accepting, lets in-flight requests finish within the grace period, and
// flushes telemetry.
func serve(ctx context.Context, app *App, ln net.Listener) error {
	srv := newServer(app)
	errc := make(chan error, 1)
	go func() { errc <- srv.Serve(ln) }()
	select {
	case err := <-errc:
		_ = app.Close(context.Background())
		return err
	case <-ctx.Done():
	}
	log.Printf("ginapp: shutting down (grace %s)", app.cfg.ShutdownGrace)
	sctx, cancel := context.WithTimeout(context.Background(), app.cfg.ShutdownGrace)
	defer cancel()
	err := srv.Shutdown(sctx)
	if err := <-errc; err != nil && !errors.Is(err, http.ErrServerClosed) {
		log.Printf("ginapp: serve: %v", err)
	}
	return errors.Join(err, app.Close(sctx))
}
