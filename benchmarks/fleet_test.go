package benchmarks

import (
	"context"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/sluice-go/sluice/internal/quota"
	"github.com/sluice-go/sluice/internal/redistest"
	"github.com/sluice-go/sluice/internal/redisx"
)

// BenchmarkFleet compares a global-limiter decision (one EVALSHA of the GCRA
// script) with the physical floor, a PING round trip on one connection to the
// same Redis, in the same run. The reserve sub-benchmarks report x-ping: their
// ns/op divided by the serial PING's.
func BenchmarkFleet(b *testing.B) {
	s := redistest.New(b)
	single := func() *redis.Client {
		opt, err := redisx.NewClientOptions(s.URL)
		if err != nil {
			b.Fatal(err)
		}
		opt.PoolSize = 1
		c := redis.NewClient(opt)
		b.Cleanup(func() { _ = c.Close() })
		return c
	}
	ctx := context.Background()
	var pingNs float64
	b.Run("ping", func(b *testing.B) {
		c := single()
		b.ReportAllocs()
		b.ResetTimer()
		for b.Loop() {
			if err := c.Ping(ctx).Err(); err != nil {
				b.Fatal(err)
			}
		}
		pingNs = float64(b.Elapsed().Nanoseconds()) / float64(b.N)
	})
	newLimiter := func(b *testing.B, c redis.UniversalClient) *quota.Limiter {
		// Never limited, so every decision is the full admit path; no
		// heartbeat goroutine (FailOpen) to keep the connection to ourselves.
		l := quota.New(redisx.New(c, redisx.Options{Timeout: time.Second}), s.Prefix+b.Name(), quota.Config{
			Requests: 1_000_000, Per: time.Second, Burst: 1_000_000, Cost: 100_000_000, CostPer: time.Second, Fallback: quota.FailOpen,
		})
		b.Cleanup(func() { _ = l.Close() })
		return l
	}
	b.Run("reserve", func(b *testing.B) {
		l := newLimiter(b, single())
		b.ReportAllocs()
		b.ResetTimer()
		for b.Loop() {
			r, err := l.Reserve(ctx, 100)
			if err != nil || r.Degraded() {
				b.Fatal(err, r.Degraded())
			}
		}
		if pingNs > 0 {
			b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N)/pingNs, "x-ping")
		}
	})
	b.Run("ping_parallel", func(b *testing.B) {
		c := s.Client()
		b.ReportAllocs()
		b.ResetTimer()
		b.RunParallel(func(pb *testing.PB) {
			for pb.Next() {
				if err := c.Ping(ctx).Err(); err != nil {
					b.Error(err)
					return
				}
			}
		})
	})
	b.Run("reserve_parallel", func(b *testing.B) {
		opt, _ := redisx.NewClientOptions(s.URL)
		c := redis.NewClient(opt)
		b.Cleanup(func() { _ = c.Close() })
		l := newLimiter(b, c)
		b.ReportAllocs()
		b.ResetTimer()
		b.RunParallel(func(pb *testing.PB) {
			for pb.Next() {
				if r, err := l.Reserve(ctx, 100); err != nil || r.Degraded() {
					b.Error(err)
					return
				}
			}
		})
	})
}
