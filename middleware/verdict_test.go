package middleware

import (
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/gin-gonic/gin"
	"github.com/ulule/limiter/v3"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/codes"

	"github.com/sluice-go/sluice"
	"github.com/sluice-go/sluice/otelx"
)

// inboundCase makes one inbound layer reject the second of two requests:
// the first is held in the handler until release is closed.
type inboundCase struct {
	layer  sluice.Layer
	reason sluice.Reason
	mw     func(tel *otelx.Telemetry) gin.HandlerFunc
	status int
	span   codes.Code
}

var inboundCases = []inboundCase{
	{sluice.LayerLoadShedder, sluice.ReasonOverloaded,
		func(tel *otelx.Telemetry) gin.HandlerFunc {
			return LoadShedder(LoadShedderSettings{MaxInFlight: 1, Telemetry: tel})
		}, 503, codes.Error},
	{sluice.LayerUserRateLimiter, sluice.ReasonRateLimited,
		func(tel *otelx.Telemetry) gin.HandlerFunc {
			return UserRateLimit(UserRateLimitSettings{Rate: limiter.Rate{Period: time.Hour, Limit: 1},
				Key: KeyFromHeader("X-API-Key"), Telemetry: tel})
		}, 429, codes.Unset},
	{sluice.LayerAdmissionQueue, sluice.ReasonQueueFull,
		func(tel *otelx.Telemetry) gin.HandlerFunc {
			return AdmissionQueue(AdmissionQueueSettings{MaxActive: 1, Timeout: time.Minute, Telemetry: tel})
		}, 503, codes.Error},
	{sluice.LayerAdmissionQueue, sluice.ReasonQueueTimeout,
		func(tel *otelx.Telemetry) gin.HandlerFunc {
			return AdmissionQueue(AdmissionQueueSettings{MaxActive: 1, MaxWaiting: 1, Timeout: 50 * time.Millisecond, Telemetry: tel})
		}, 503, codes.Error},
}

// TestInboundVerdict asserts, for every inbound layer and reason, the exact
// resilience attributes on the otelgin server span, its status, the response
// and the resilience.requests increment.
func TestInboundVerdict(t *testing.T) {
	for _, c := range inboundCases {
		t.Run(string(c.layer)+"/"+string(c.reason), func(t *testing.T) {
			tm := newTelemetry(t)
			r := tm.engine()
			held := make(chan struct{})
			release := make(chan struct{})
			r.Use(c.mw(tm.tel))
			r.GET("/x", func(g *gin.Context) {
				if g.Query("hold") != "" {
					close(held)
					<-release
				}
				g.Status(http.StatusOK)
			})
			first := make(chan int, 1)
			go func() {
				req := httptest.NewRequest(http.MethodGet, "/x?hold=1", nil)
				req.Header.Set("X-API-Key", "alice")
				first <- serve(r, req).Code
			}()
			<-held
			req := httptest.NewRequest(http.MethodGet, "/x", nil)
			req.Header.Set("X-API-Key", "alice")
			w := serve(r, req)
			close(release)
			if code := <-first; code != http.StatusOK {
				t.Fatalf("held request: %d", code)
			}
			if w.Code != c.status || w.Header().Get("Retry-After") == "" ||
				!strings.Contains(w.Body.String(), `"reason":"`+string(c.reason)+`"`) {
				t.Fatalf("rejection: %d %v %s", w.Code, w.Header(), w.Body)
			}
			spans := tm.serverSpans(otelx.AttrErrorType.String(string(c.reason)))
			if len(spans) != 1 {
				t.Fatalf("%d server spans carry error.type=%s, want 1", len(spans), c.reason)
			}
			got := map[attribute.Key]string{}
			for _, kv := range spans[0].Attributes() {
				if strings.HasPrefix(string(kv.Key), "resilience.") || kv.Key == otelx.AttrErrorType {
					got[kv.Key] = kv.Value.Emit()
				}
			}
			want := map[attribute.Key]string{
				otelx.AttrLayer:      string(c.layer),
				otelx.AttrOutcome:    string(otelx.OutcomeOf(c.reason)),
				otelx.AttrErrorType:  string(c.reason),
				otelx.AttrPolicyName: sluice.DefaultName,
			}
			for k, v := range want {
				if got[k] != v {
					t.Errorf("%s = %q, want %q (all: %v)", k, got[k], v, got)
				}
			}
			for k := range got {
				if _, ok := want[k]; !ok && k != otelx.AttrRetryAfter && k != otelx.AttrQueueWait {
					t.Errorf("unexpected attribute %s=%s", k, got[k])
				}
			}
			if statusOf(spans[0]) != c.span {
				t.Errorf("span status %v, want %v", statusOf(spans[0]), c.span)
			}
			if n := tm.sum(t, otelx.MetricRequests, otelx.AttrLayer.String(string(c.layer)),
				otelx.AttrErrorType.String(string(c.reason)), otelx.AttrOutcome.String(string(otelx.OutcomeOf(c.reason))),
				otelx.AttrPolicyName.String(sluice.DefaultName)); n != 1 {
				t.Errorf("%s{%s,%s} = %d, want 1", otelx.MetricRequests, c.layer, c.reason, n)
			}
		})
	}
}

// TestInboundVerdictCoversEveryInboundReason fails when a reason is added to
// an inbound layer without a case above.
func TestInboundVerdictCoversEveryInboundReason(t *testing.T) {
	have := map[[2]string]bool{}
	for _, c := range inboundCases {
		have[[2]string{string(c.layer), string(c.reason)}] = true
	}
	for _, l := range sluice.Layers() {
		if !l.Inbound() {
			continue
		}
		for _, r := range l.Reasons() {
			if !have[[2]string{string(l), string(r)}] {
				t.Errorf("no TestInboundVerdict case for %s/%s", l, r)
			}
		}
	}
}
