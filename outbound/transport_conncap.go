package outbound

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"net"
	"sync"
	"sync/atomic"
	"time"

	"github.com/sluice-go/sluice"
	"github.com/sluice-go/sluice/internal/connlimit"
)

const (
	// closeLinger is how long a closed socket keeps its slot waiting for the
	// peer to close its side.
	closeLinger = time.Second
	// sweepInterval is how often idle connections are closed while a request
	// waits for a slot under a full total cap.
	sweepInterval = 20 * time.Millisecond
)

// dialContext is the http.Transport dial hook: it takes a socket slot for
// addr, waiting at most the pool timeout, and dials within the connect
// timeout. The returned conn gives its slot back once it has closed; a failed
// dial gives it back at once.
//
// ctx is net/http's dial context: it keeps the request's values but not its
// cancellation, because a dial may serve another request than the one that
// started it. net/http cancels it when no request wants the dial any more
// (see CloseIdleConnections).
func (t *Transport) dialContext(ctx context.Context, network, addr string) (net.Conn, error) {
	if err := t.limit.Acquire(ctx, addr, t.cfg.PoolTimeout, t.onSlotWait); err != nil {
		if errors.Is(err, connlimit.ErrTimeout) {
			err = transportError(sluice.ReasonPoolTimeout, fmt.Errorf(
				"outbound: no socket slot for %s within %s (%d of %d open): %w",
				addr, t.cfg.PoolTimeout, t.limit.Open(), t.cfg.MaxConns, err))
		}
		return nil, err
	}
	// The connect ignores ctx's cancellation: a connect aborted halfway may
	// already be established at the peer, and only a conn we hold can be
	// closed the slow way that keeps the peer's count under the cap.
	cctx, cancel := context.WithTimeoutCause(context.WithoutCancel(ctx), t.cfg.ConnectTimeout, t.connectCause)
	defer cancel()
	c, err := t.cfg.DialContext(cctx, network, addr)
	if err != nil || c == nil {
		if c == nil && err == nil {
			err = errors.New("outbound: dial returned (nil, nil)")
		}
		t.limit.Release(addr)
		if context.Cause(cctx) == t.connectCause {
			err = transportError(sluice.ReasonConnectTimeout, err)
		}
		return nil, err
	}
	conn := &capConn{Conn: c, t: t, key: addr}
	if err := ctx.Err(); err != nil { // nobody wants this dial any more
		conn.Close()
		return nil, err
	}
	return conn, nil
}

// dialTLSContext dials through dialContext and runs the TLS handshake within
// the handshake timeout, offering h2 by ALPN.
func (t *Transport) dialTLSContext(ctx context.Context, network, addr string) (net.Conn, error) {
	c, err := t.dialContext(ctx, network, addr)
	if err != nil {
		return nil, err
	}
	cfg := t.cfg.TLSClientConfig.Clone()
	if cfg.ServerName == "" {
		host, _, err := net.SplitHostPort(addr)
		if err != nil {
			host = addr
		}
		cfg.ServerName = host
	}
	if len(cfg.NextProtos) == 0 {
		cfg.NextProtos = []string{"h2", "http/1.1"}
	}
	tc := tls.Client(c, cfg)
	hctx, cancel := context.WithTimeoutCause(ctx, t.cfg.TLSHandshakeTimeout, t.tlsCause)
	defer cancel()
	if err := tc.HandshakeContext(hctx); err != nil {
		c.Close()
		if context.Cause(hctx) == t.tlsCause && ctx.Err() == nil {
			err = transportError(sluice.ReasonTLSHandshakeTimeout, err)
		}
		return nil, err
	}
	return tc, nil
}

// onSlotWait runs when a dial has to wait for a slot. If the total cap is the
// reason, idle connections (to other hosts: an idle one to this host would
// have been used instead of dialing) are closed until nobody waits.
func (t *Transport) onSlotWait() {
	if t.limit.Starved() && t.sweeping.CompareAndSwap(false, true) {
		go t.sweep()
	}
}

// sweep closes idle connections every sweepInterval while a dial waits under
// a full total cap. CloseIdleConnections also cancels dials that no request
// waits for any more, so they stop queueing for slots.
func (t *Transport) sweep() {
	tick := time.NewTicker(sweepInterval)
	defer tick.Stop()
	for {
		t.base.CloseIdleConnections()
		<-tick.C
		if !t.limit.Starved() {
			t.sweeping.Store(false)
			// A waiter may have queued between the check and the store and
			// seen sweeping still true: take the job back if so.
			if !t.limit.Starved() || !t.sweeping.CompareAndSwap(false, true) {
				return
			}
		}
	}
}

// capConn holds a socket slot until the socket has really closed.
type capConn struct {
	net.Conn
	t      *Transport
	key    string
	closed atomic.Bool
	// reading is held shared by Reads and exclusively by linger, which must
	// be the only reader once the conn is closed.
	reading sync.RWMutex
}

type closeWriter interface{ CloseWrite() error }

// pastDeadline is a deadline in the past: it ends any pending Read at once.
var pastDeadline = time.Unix(1, 0)

// Read reads from the socket; after Close it fails like a closed conn.
func (c *capConn) Read(p []byte) (int, error) {
	if c.closed.Load() {
		return 0, net.ErrClosed
	}
	c.reading.RLock()
	defer c.reading.RUnlock()
	if c.closed.Load() {
		return 0, net.ErrClosed
	}
	return c.Conn.Read(p)
}

// Close ends the conn for its user at once, like any Close: pending and
// later Reads fail. A TCP socket is half-closed, and a goroutine waits up to
// closeLinger for the peer to close its side (discarding what it still
// sends), then closes the socket and frees the slot. Other sockets close, and
// free their slot, at once. Only the first Close counts.
func (c *capConn) Close() error {
	if !c.closed.CompareAndSwap(false, true) {
		return nil
	}
	if cw, ok := c.Conn.(closeWriter); ok {
		// End pending Reads before the peer hears of the close: its answer
		// to our FIN (say, the end of a chunked body) must not reach them.
		_ = c.Conn.SetReadDeadline(pastDeadline)
		if cw.CloseWrite() == nil {
			go c.linger()
			return nil
		}
	}
	err := c.Conn.Close()
	c.t.limit.Release(c.key)
	return err
}

func (c *capConn) linger() {
	c.reading.Lock() // the user's Reads have returned
	defer c.reading.Unlock()
	_ = c.Conn.SetReadDeadline(time.Now().Add(closeLinger))
	var buf [512]byte
	for {
		if _, err := c.Conn.Read(buf[:]); err != nil {
			break
		}
	}
	_ = c.Conn.Close()
	c.t.limit.Release(c.key)
}
