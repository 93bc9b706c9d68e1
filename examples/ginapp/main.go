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

	"github.com/sluice-go/sluice/middleware"
)

// demoDuration is -demo-duration's default.
const demoDuration = 6 * time.Second

func main() {
	demo := flag.Bool("demo", false, "start the app and a fake vendor, drive an overload burst and print what happened")
	demoFor := flag.Duration("demo-duration", demoDuration, "how long the demo burst lasts")
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

// maxHeaderBytes bounds a request's headers (past it the server answers 431).
const maxHeaderBytes = 64 << 10

// newServer is the app's http.Server, with a bound on everything a client
// controls:
//
//   - the headers: SLUICE_READ_HEADER_TIMEOUT and maxHeaderBytes (431);
//   - the body: the chat body is buffered before the admission queue, at most
//     maxChatBody (413) within SLUICE_BODY_TIMEOUT (408); ReadTimeout, the
//     header and body timeouts together, bounds any other route's body;
//   - the answer: ReadTimeout aside, WriteTimeout is the longest a /v1
//     request may take (body, queue wait, request budget and the Deadline
//     middleware's write grace), and the Deadline middleware tightens it per
//     request, so a client that stops reading a stream is cut off at its
//     request's deadline;
//   - an idle keep-alive connection: closed after SLUICE_IDLE_TIMEOUT.
func newServer(app *App) *http.Server {
	cfg := app.cfg
	return &http.Server{
		Handler:           app.Handler(),
		ReadHeaderTimeout: cfg.ReadHeaderTimeout,
		ReadTimeout:       cfg.ReadHeaderTimeout + cfg.BodyTimeout,
		WriteTimeout:      cfg.BodyTimeout + cfg.QueueTimeout + cfg.RequestTimeout + middleware.DeadlineGrace,
		IdleTimeout:       cfg.IdleTimeout,
		MaxHeaderBytes:    maxHeaderBytes,
	}
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
	app.stopping.Store(true) // /readyz: 503 from now on
	if d := app.cfg.ShutdownDelay; d > 0 {
		// Keep serving while the load balancer sees /readyz fail and
		// stops sending new requests here.
		log.Printf("ginapp: not ready; serving %s more before closing the listener", d)
		t := time.NewTimer(d)
		select {
		case <-t.C:
		case err := <-errc:
			t.Stop()
			_ = app.Close(context.Background())
			return err
		}
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
