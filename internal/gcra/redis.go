package gcra

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/redis/go-redis/v9"
	"github.com/ulule/limiter/v3"

	"github.com/sluice-go/sluice/internal/rkey"
)

// decideScript is one GCRA decision: it reads the server clock, the stored
// theoretical arrival time (µs) and, when the request fits, stores the new one
// with a TTL that ends when the state would be full again. A count of 0 peeks.
//
// KEYS[1] the state key; ARGV interval µs, tolerance µs, count.
// Returns {allowed (0/1), now µs, tat µs before this request}.
var decideScript = redis.NewScript(`
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000000 + tonumber(t[2])
local interval = tonumber(ARGV[1])
local tau = tonumber(ARGV[2])
local count = tonumber(ARGV[3])
local tat = tonumber(redis.call('GET', KEYS[1]) or '0') or 0
if tat < now then tat = now end
if count <= 0 then return {0, now, tat} end
local nxt = tat + interval * count
if nxt - now > tau then return {0, now, tat} end
redis.call('SET', KEYS[1], string.format('%d', nxt), 'PX', string.format('%d', math.ceil((nxt - now) / 1000)))
return {1, now, tat}
`)

var resetScript = redis.NewScript(`return redis.call('DEL', KEYS[1])`)

// RedisStore is a GCRA limiter.Store in Redis. Safe for concurrent use.
type RedisStore struct {
	client  redis.Scripter
	prefix  string
	timeout time.Duration
}

// NewRedisStore returns a store whose keys are sluice:{<prefix>:<key>}:gcra,
// the key escaped with rkey.Escape and the prefix too. timeout bounds every call
// on a client that honours context deadlines (middleware.NewGCRAStore refuses
// one that does not: redisx.CheckDeadlines). It does no I/O.
func NewRedisStore(client redis.Scripter, prefix string, timeout time.Duration) *RedisStore {
	return &RedisStore{client: client, prefix: rkey.Escape(prefix), timeout: timeout}
}

// Key returns the Redis key of the state for key.
func (s *RedisStore) Key(key string) string {
	var b strings.Builder
	esc := rkey.Escape(key)
	b.Grow(len("sluice:{:}:gcra") + len(s.prefix) + len(esc))
	b.WriteString("sluice:{")
	b.WriteString(s.prefix)
	b.WriteByte(':')
	b.WriteString(esc)
	b.WriteString("}:gcra")
	return b.String()
}

// Decide runs one decision for count requests (0: peek).
func (s *RedisStore) Decide(ctx context.Context, key string, count int64, rate limiter.Rate) (Decision, error) {
	interval, tau, ok := params(rate, time.Microsecond)
	if !ok {
		return denied(rate), nil
	}
	if s.timeout > 0 {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, s.timeout)
		defer cancel()
	}
	res, err := decideScript.Run(ctx, s.client, []string{s.Key(key)}, interval, tau, count).Int64Slice()
	if err != nil {
		return Decision{}, fmt.Errorf("gcra: redis: %w", err)
	}
	if len(res) != 3 {
		return Decision{}, errors.New("gcra: redis: unexpected script reply")
	}
	allowed, now, tat := res[0] == 1, res[1], res[2]
	d, _, stored := decide(now, tat, interval, tau, count, rate.Limit, time.Microsecond)
	if count > 0 && stored != allowed {
		// The script and the Go model disagree only if the arithmetic
		// differs; trust the script, which decided atomically.
		d.Reached = !allowed
		if d.Reached && d.RetryAfter <= 0 {
			d.RetryAfter = time.Duration(interval) * time.Microsecond
		}
	}
	return d, nil
}

// Get admits one request.
func (s *RedisStore) Get(ctx context.Context, key string, rate limiter.Rate) (limiter.Context, error) {
	d, err := s.Decide(ctx, key, 1, rate)
	return d.Context, err
}

// Increment admits count requests at once, or none.
func (s *RedisStore) Increment(ctx context.Context, key string, count int64, rate limiter.Rate) (limiter.Context, error) {
	d, err := s.Decide(ctx, key, count, rate)
	return d.Context, err
}

// Peek reports the state without changing it.
func (s *RedisStore) Peek(ctx context.Context, key string, rate limiter.Rate) (limiter.Context, error) {
	d, err := s.Decide(ctx, key, 0, rate)
	return d.Context, err
}

// Reset forgets key's state: the full burst is available again.
func (s *RedisStore) Reset(ctx context.Context, key string, rate limiter.Rate) (limiter.Context, error) {
	if s.timeout > 0 {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, s.timeout)
		defer cancel()
	}
	if err := resetScript.Run(ctx, s.client, []string{s.Key(key)}).Err(); err != nil && !errors.Is(err, redis.Nil) {
		return limiter.Context{}, fmt.Errorf("gcra: redis: %w", err)
	}
	return limiter.Context{Limit: rate.Limit, Remaining: rate.Limit, Reset: time.Now().Unix()}, nil
}
