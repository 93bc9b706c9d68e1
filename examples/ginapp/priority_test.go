package main

import (
	"net/http/httptest"
	"testing"

	"github.com/failsafe-go/failsafe-go/priority"
)

// The critical keys get VeryHigh everywhere priority is read; every other
// key, and a request without one, Medium. SLUICE_FAIR_QUEUE decides whether
// the admission queue takes turns across API keys.
func TestCriticalKeysAndFairQueueWiring(t *testing.T) {
	for _, fair := range []bool{true, false} {
		a := &App{cfg: Config{QueueActive: 1, FairQueue: fair}, critical: map[string]struct{}{"vip": {}}}
		for key, want := range map[string]priority.Priority{"vip": priority.VeryHigh, "user-1": priority.Medium,
			"VIP": priority.Medium, "": priority.Medium} {
			r := httptest.NewRequest("POST", "/v1/chat", nil)
			if key != "" {
				r.Header.Set("X-API-Key", key)
			}
			if got := a.priority(r); got != want {
				t.Errorf("key %q: priority %d, want %d", key, got, want)
			}
		}
		s := a.queueSettings(nil)
		if s.Priority == nil || (s.Key != nil) != fair {
			t.Errorf("fair=%v: queue settings Priority set %v, Key set %v", fair, s.Priority != nil, s.Key != nil)
		}
		if a.shedderSettings(nil).Priority == nil {
			t.Error("with critical keys the shedder is not priority-aware")
		}
	}
	// Without critical keys the shedder lets every request fill its whole
	// cap (a priority-aware one would hold the others to 80% of it).
	a := &App{cfg: Config{MaxInflight: 1}, critical: map[string]struct{}{}}
	if a.shedderSettings(nil).Priority != nil {
		t.Error("without critical keys the shedder is priority-aware")
	}
}
