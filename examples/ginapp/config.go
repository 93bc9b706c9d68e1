package main

import (
	"fmt"
	"net"
	"net/url"
	"os"
	"strconv"
	"strings"
	"time"

	"github.com/redis/go-redis/v9"
	limiter "github.com/ulule/limiter/v3"
)

// Config is the app's configuration, read from the environment. Every field
// names its variable and default in docs/example-app.md.
type Config struct {
	Addr        string // SLUICE_ADDR, default 127.0.0.1:8080
	VendorURL   string // VENDOR_URL; empty starts the embedded fake vendor
	RedisURL    string // REDIS_URL; empty keeps every store in memory
	OTLP        string // OTEL_EXPORTER_OTLP_ENDPOINT; empty exports no traces
	ServiceName string // OTEL_SERVICE_NAME, default sluice-ginapp

	MaxInflight  int           // SLUICE_MAX_INFLIGHT, default 256
	UserRate     limiter.Rate  // SLUICE_USER_RATE, default 10-S
	QueueActive  int           // SLUICE_QUEUE_ACTIVE, default 64
	QueueWaiting int           // SLUICE_QUEUE_WAITING, default 128
	QueueTimeout time.Duration // SLUICE_QUEUE_TIMEOUT, default 2s
	CriticalKeys []string      // SLUICE_CRITICAL_KEYS, default none
	FairQueue    bool          // SLUICE_FAIR_QUEUE, default true

	VendorMaxConns     int           // SLUICE_VENDOR_MAX_CONNS, default 16
	VendorRate         limiter.Rate  // SLUICE_VENDOR_RATE, default 50-S (fleet-wide)
	VendorTokens       limiter.Rate  // SLUICE_VENDOR_TOKENS, default off; e.g. 100000-M
	VendorConcurrency  int           // SLUICE_VENDOR_CONCURRENCY, default 8
	VendorQueueTimeout time.Duration // SLUICE_VENDOR_QUEUE_TIMEOUT, default 1s
	VendorAdaptive     bool          // SLUICE_VENDOR_ADAPTIVE, default false
	AttemptTimeout     time.Duration // SLUICE_ATTEMPT_TIMEOUT, default 10s
	RetryAttempts      int           // SLUICE_RETRY_ATTEMPTS, default 3 (total attempts)
	RequestTimeout     time.Duration // SLUICE_REQUEST_TIMEOUT, default 15s
	ShutdownGrace      time.Duration // SLUICE_SHUTDOWN_GRACE, default 10s
	ShutdownDelay      time.Duration // SLUICE_SHUTDOWN_DELAY, default 0: /readyz 503 before the listener closes

	// The server's bounds on slow and idle clients.
	ReadHeaderTimeout time.Duration // SLUICE_READ_HEADER_TIMEOUT, default 10s
	BodyTimeout       time.Duration // SLUICE_BODY_TIMEOUT, default 10s
	IdleTimeout       time.Duration // SLUICE_IDLE_TIMEOUT, default 60s

	// The embedded fake vendor, used when VENDOR_URL is unset.
	FakeLatency   time.Duration // SLUICE_FAKE_LATENCY, default 50ms
	FakeCapacity  int           // SLUICE_FAKE_CAPACITY, default 16 (concurrent requests; past it 503)
	FakeRate      int           // SLUICE_FAKE_RATE, default 100 (requests/s; past it 429)
	FakeErrorRate float64       // SLUICE_FAKE_ERROR_RATE, default 0 (fraction answered 500)
}

// LoadConfig reads the configuration from getenv (os.Getenv in main). An
// invalid value is an error that names its variable.
func LoadConfig(getenv func(string) string) (Config, error) {
	p := parser{getenv: getenv}
	c := Config{
		Addr:        p.addr("SLUICE_ADDR", "127.0.0.1:8080"),
		VendorURL:   p.url("VENDOR_URL"),
		RedisURL:    p.redisURL("REDIS_URL"),
		OTLP:        p.url("OTEL_EXPORTER_OTLP_ENDPOINT"),
		ServiceName: p.str("OTEL_SERVICE_NAME", "sluice-ginapp"),

		MaxInflight:  p.positive("SLUICE_MAX_INFLIGHT", 256),
		UserRate:     p.rate("SLUICE_USER_RATE", "10-S", false),
		QueueActive:  p.positive("SLUICE_QUEUE_ACTIVE", 64),
		QueueWaiting: p.nonNegative("SLUICE_QUEUE_WAITING", 128),
		QueueTimeout: p.duration("SLUICE_QUEUE_TIMEOUT", 2*time.Second),
		CriticalKeys: p.keys("SLUICE_CRITICAL_KEYS"),
		FairQueue:    p.bool("SLUICE_FAIR_QUEUE", true),

		VendorMaxConns:     p.positive("SLUICE_VENDOR_MAX_CONNS", 16),
		VendorRate:         p.smoothRate("SLUICE_VENDOR_RATE", "50-S"),
		VendorTokens:       p.rate("SLUICE_VENDOR_TOKENS", "", true),
		VendorConcurrency:  p.positive("SLUICE_VENDOR_CONCURRENCY", 8),
		VendorQueueTimeout: p.duration("SLUICE_VENDOR_QUEUE_TIMEOUT", time.Second),
		VendorAdaptive:     p.bool("SLUICE_VENDOR_ADAPTIVE", false),
		AttemptTimeout:     p.duration("SLUICE_ATTEMPT_TIMEOUT", 10*time.Second),
		RetryAttempts:      p.positive("SLUICE_RETRY_ATTEMPTS", 3),
		RequestTimeout:     p.duration("SLUICE_REQUEST_TIMEOUT", 15*time.Second),
		ShutdownGrace:      p.duration("SLUICE_SHUTDOWN_GRACE", 10*time.Second),
		ShutdownDelay:      p.delay("SLUICE_SHUTDOWN_DELAY"),

		ReadHeaderTimeout: p.duration("SLUICE_READ_HEADER_TIMEOUT", 10*time.Second),
		BodyTimeout:       p.duration("SLUICE_BODY_TIMEOUT", 10*time.Second),
		IdleTimeout:       p.duration("SLUICE_IDLE_TIMEOUT", 60*time.Second),

		FakeLatency:   p.duration("SLUICE_FAKE_LATENCY", 50*time.Millisecond),
		FakeCapacity:  p.nonNegative("SLUICE_FAKE_CAPACITY", 16),
		FakeRate:      p.nonNegative("SLUICE_FAKE_RATE", 100),
		FakeErrorRate: p.fraction("SLUICE_FAKE_ERROR_RATE", 0),
	}
	if p.err != nil {
		return Config{}, p.err
	}
	return c, nil
}

type parser struct {
	getenv func(string) string
	err    error
}

func (p *parser) fail(name, val, want string) {
	if p.err == nil {
		p.err = fmt.Errorf("config: %s=%q: %s", name, val, want)
	}
}

func (p *parser) str(name, def string) string {
	if v := strings.TrimSpace(p.getenv(name)); v != "" {
		return v
	}
	return def
}

// addr wants host:port (the host may be empty: all interfaces).
func (p *parser) addr(name, def string) string {
	v := p.str(name, def)
	if _, port, err := net.SplitHostPort(v); err != nil || port == "" {
		p.fail(name, v, "want host:port, e.g. 127.0.0.1:8080 or :8080")
		return def
	}
	return v
}

// redisURL wants what redis.ParseURL accepts, checked here so that a typo
// stops the app at start rather than at the first request.
func (p *parser) redisURL(name string) string {
	v := strings.TrimSpace(p.getenv(name))
	if v == "" {
		return ""
	}
	if _, err := redis.ParseURL(v); err != nil {
		shown := "(redacted)" // the value may hold a password: never print it whole
		if u, err := url.Parse(v); err == nil {
			shown = u.Redacted()
		}
		p.fail(name, shown, "want redis://[user:password@]host:port/db or rediss://...")
		return ""
	}
	return v
}

func (p *parser) url(name string) string {
	v := strings.TrimSpace(p.getenv(name))
	if v == "" {
		return ""
	}
	u, err := url.Parse(v)
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		shown := "(redacted)" // the value may hold a password: never print it whole
		if err == nil {
			shown = u.Redacted()
		}
		p.fail(name, shown, "want an http:// or https:// URL with a host")
		return ""
	}
	return strings.TrimRight(v, "/")
}

func (p *parser) int(name string, def, min int, want string) int {
	v := strings.TrimSpace(p.getenv(name))
	if v == "" {
		return def
	}
	n, err := strconv.Atoi(v)
	if err != nil || n < min {
		p.fail(name, v, want)
		return def
	}
	return n
}

func (p *parser) positive(name string, def int) int {
	return p.int(name, def, 1, "want a whole number > 0")
}

func (p *parser) nonNegative(name string, def int) int {
	return p.int(name, def, 0, "want a whole number >= 0")
}

// maxShutdownDelay bounds SLUICE_SHUTDOWN_DELAY: a pod's termination grace
// period is 30s by default.
const maxShutdownDelay = time.Minute

// delay reads a duration that may be zero (the default), at most
// maxShutdownDelay.
func (p *parser) delay(name string) time.Duration {
	v := strings.TrimSpace(p.getenv(name))
	if v == "" {
		return 0
	}
	d, err := time.ParseDuration(v)
	if err != nil || d < 0 || d > maxShutdownDelay {
		p.fail(name, v, "want a Go duration from 0s to 1m, such as 5s")
		return 0
	}
	return d
}

func (p *parser) duration(name string, def time.Duration) time.Duration {
	v := strings.TrimSpace(p.getenv(name))
	if v == "" {
		return def
	}
	d, err := time.ParseDuration(v)
	if err != nil || d <= 0 {
		p.fail(name, v, "want a positive Go duration such as 500ms or 2s")
		return def
	}
	return d
}

func (p *parser) fraction(name string, def float64) float64 {
	v := strings.TrimSpace(p.getenv(name))
	if v == "" {
		return def
	}
	f, err := strconv.ParseFloat(v, 64)
	if err != nil || f < 0 || f > 1 {
		p.fail(name, v, "want a number from 0 to 1")
		return def
	}
	return f
}

// rate parses ulule's format, <limit>-<period> with period S, M, H or D
// (e.g. 10-S, 100000-M). When canBeOff, "off" (and an empty default) means
// off, a zero Rate; otherwise the layer needs a rate and "off" is invalid.
func (p *parser) rate(name, def string, canBeOff bool) limiter.Rate {
	v := strings.TrimSpace(p.getenv(name))
	if v == "" {
		v = def
	}
	if canBeOff && (v == "" || v == "off") {
		return limiter.Rate{}
	}
	r, err := limiter.NewRateFromFormatted(v)
	if err != nil || r.Limit <= 0 {
		p.fail(name, v, "want <limit>-<period> with period S, M, H or D, e.g. 10-S")
		return limiter.Rate{}
	}
	return r
}

// smoothRate is a rate that may be off, for a smooth limiter: one request
// every Period/Limit, which must not round down to zero (outbound.WithLocalRateLimit
// would panic).
func (p *parser) smoothRate(name, def string) limiter.Rate {
	r := p.rate(name, def, true)
	if r.Limit > 0 && r.Period/time.Duration(r.Limit) < time.Microsecond {
		p.fail(name, r.Formatted, "want at most one request per microsecond")
		return limiter.Rate{}
	}
	return r
}

func (p *parser) bool(name string, def bool) bool {
	v := strings.TrimSpace(p.getenv(name))
	if v == "" {
		return def
	}
	b, err := strconv.ParseBool(v)
	if err != nil {
		p.fail(name, v, "want true or false")
		return def
	}
	return b
}

// Bounds on SLUICE_CRITICAL_KEYS.
const (
	maxCriticalKeys   = 1000
	maxCriticalKeyLen = 256
)

// keys parses a comma-separated list of API keys. The keys are secrets: an
// error names the variable and the entry's position, never a key.
func (p *parser) keys(name string) []string {
	v := strings.TrimSpace(p.getenv(name))
	if v == "" {
		return nil
	}
	parts := strings.Split(v, ",")
	if len(parts) > maxCriticalKeys {
		p.failSecret(name, fmt.Sprintf("%d keys, want at most %d", len(parts), maxCriticalKeys))
		return nil
	}
	keys := make([]string, 0, len(parts))
	for i, k := range parts {
		k = strings.TrimSpace(k)
		switch {
		case k == "":
			p.failSecret(name, fmt.Sprintf("key %d is empty; want comma-separated API keys", i+1))
			return nil
		case len(k) > maxCriticalKeyLen:
			p.failSecret(name, fmt.Sprintf("key %d is longer than %d bytes", i+1, maxCriticalKeyLen))
			return nil
		case strings.ContainsFunc(k, func(r rune) bool { return r < 0x21 || r > 0x7e }):
			p.failSecret(name, fmt.Sprintf("key %d has a space or a character that cannot be sent in X-API-Key", i+1))
			return nil
		}
		keys = append(keys, k)
	}
	return keys
}

// failSecret is fail for a value that must not be printed.
func (p *parser) failSecret(name, want string) {
	if p.err == nil {
		p.err = fmt.Errorf("config: %s=(not shown): %s", name, want)
	}
}

// environ adapts os.Getenv.
var environ = os.Getenv
