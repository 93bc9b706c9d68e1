package status

import (
	"encoding/json"
	"html/template"
	"math"
	"net/http"
	"strconv"
	"time"
)

// RefreshSeconds is how often the HTML page reloads itself.
const RefreshSeconds = 2

// ServeHTTP serves the status page: HTML that reloads itself every
// RefreshSeconds, or with ?format=json the Snapshot as JSON. It answers GET
// and HEAD only (405 otherwise) and is read-only: no request changes any
// state. Responses are marked no-store, and the HTML may load nothing (its
// Content-Security-Policy is default-src 'none', its style inline).
func (r *Registry) ServeHTTP(w http.ResponseWriter, req *http.Request) {
	if req.Method != http.MethodGet && req.Method != http.MethodHead {
		w.Header().Set("Allow", "GET, HEAD")
		http.Error(w, "method not allowed", http.StatusMethodNotAllowed)
		return
	}
	s := r.Snapshot(req.Context())
	h := w.Header()
	h.Set("Cache-Control", "no-store")
	h.Set("X-Content-Type-Options", "nosniff")
	if req.URL.Query().Get("format") == "json" {
		h.Set("Content-Type", "application/json")
		enc := json.NewEncoder(w)
		enc.SetIndent("", "  ")
		_ = enc.Encode(s)
		return
	}
	h.Set("Content-Type", "text/html; charset=utf-8")
	h.Set("Content-Security-Policy", "default-src 'none'; style-src 'unsafe-inline'")
	_ = page.Execute(w, s)
}

var page = template.Must(template.New("status").Funcs(template.FuncMap{
	"secs":  secs,
	"clock": func(t time.Time) string { return t.UTC().Format("15:04:05.000") },
	"pct": func(g Gauge) int {
		if g.Max <= 0 {
			return 0
		}
		return int(min(100, math.Round(100*float64(g.Value)/float64(g.Max))))
	},
	"refresh": func() int { return RefreshSeconds },
}).Parse(pageHTML))

// secs formats seconds for display: "0", "1.25s", "2m30s".
func secs(s float64) string {
	if s <= 0 {
		return "0"
	}
	if s < 60 {
		return strconv.FormatFloat(s, 'f', 2, 64) + "s"
	}
	return (time.Duration(s * float64(time.Second)).Round(time.Second)).String()
}

const pageHTML = `<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8">
<meta http-equiv="refresh" content="{{refresh}}">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>sluice status</title>
<style>
body{font:14px/1.4 system-ui,sans-serif;margin:16px;color:#222;background:#fafafa}
h1{font-size:20px;margin:0 0 4px}h2{font-size:16px;margin:20px 0 8px}
.meta{color:#666;font-size:12px}
.grid{display:flex;flex-wrap:wrap;gap:12px}
.card{background:#fff;border:1px solid #ddd;border-radius:6px;padding:10px 12px;min-width:260px;max-width:360px}
.card h3{margin:0 0 6px;font-size:14px}.card h3 small{color:#666;font-weight:normal}
.side{font-size:11px;text-transform:uppercase;color:#888}
.bar{background:#eee;border-radius:3px;height:8px;margin:2px 0 6px}.bar div{background:#4a90d9;height:8px;border-radius:3px}
.bar div.hot{background:#d9534f}
.state{display:inline-block;padding:1px 8px;border-radius:10px;font-weight:bold;color:#fff}
.closed{background:#2e7d32}.open{background:#c62828}.half-open{background:#ef6c00}
.ok{color:#2e7d32}.bad{color:#c62828;font-weight:bold}
table{border-collapse:collapse;font-size:13px}td,th{padding:2px 8px;text-align:left;border-bottom:1px solid #eee}
.num{text-align:right;font-variant-numeric:tabular-nums}
</style></head><body>
<h1>sluice status</h1>
<div class="meta">snapshot {{clock .Time}} UTC · reloads every {{refresh}}s · <a href="?format=json">JSON</a></div>
<h2>Layers</h2>
{{if not .Layers}}<p>No layer is registered.</p>{{end}}
<div class="grid">
{{range .Layers}}<div class="card" data-layer="{{.Layer}}" data-policy="{{.Policy}}">
<div class="side">{{.Side}}</div>
<h3>{{.Layer}} <small>{{.Policy}}</small></h3>
{{range .Gauges}}<div class="gauge" data-gauge="{{.Name}}">{{.Name}}: <b class="value">{{.Value}}</b>{{if .Max}} of {{.Max}}{{end}}</div>
{{if .Max}}<div class="bar"><div class="{{if ge (pct .) 90}}hot{{end}}" style="width:{{pct .}}%"></div></div>{{end}}{{end}}
{{with .Breaker}}<div class="breaker">breaker: <span class="state {{.State}}" data-state="{{.State}}">{{.State}}</span>{{if .HalfOpenInSeconds}} half-open in {{secs .HalfOpenInSeconds}}{{end}}</div>
{{with .Fleet}}<div class="fleet">fleet: <span class="state {{.State}}" data-fleet-state="{{.State}}">{{.State}}</span>{{if .HalfOpenInSeconds}} half-open in {{secs .HalfOpenInSeconds}}{{end}}</div>{{end}}{{end}}
{{with .Quota}}<div class="quota">quota ({{.Source}}{{if .Members}}, {{.Members}} process{{if gt .Members 1}}es{{end}}{{end}}):
{{with .RequestsRemaining}} requests left now <b>{{.}}</b>;{{end}}{{with .TokensRemaining}} tokens left now <b>{{.}}</b>;{{end}}
next free slot {{if .NextFreeInSeconds}}in {{secs .NextFreeInSeconds}}{{else}}now{{end}}{{with .Lease}}; leased here: <b>{{.Requests}}</b> requests{{if .Tokens}}, <b>{{.Tokens}}</b> tokens{{end}}{{if or .ReturnRequests .ReturnTokens}} ({{.ReturnRequests}} requests, {{.ReturnTokens}} tokens to hand back){{end}}{{end}}{{with .CooldownUntil}}; <span class="bad">vendor cooldown until {{clock .}} UTC</span>{{end}}</div>{{end}}
{{with .Redis}}<div class="redis">redis: {{if .Healthy}}<span class="ok">healthy</span>{{else}}<span class="bad">unreachable: deciding by failure mode</span>{{end}}, degraded decisions: {{.Degraded}}</div>{{end}}
{{if .Settings}}<div class="meta">{{range $i, $s := .Settings}}{{if $i}} · {{end}}{{$s.Name}} {{$s.Value}}{{end}}</div>{{end}}
<div class="meta">rejected:{{range .Rejections}} {{.Reason}} <b>{{.Count}}</b>{{end}}</div>
</div>
{{end}}</div>
<h2>Recent rejections</h2>
{{if .Recent}}<table><tr><th>time (UTC)</th><th>layer</th><th>policy</th><th>reason</th><th class="num">retry after</th></tr>
{{range .Recent}}<tr><td>{{clock .Time}}</td><td>{{.Layer}}</td><td>{{.Policy}}</td><td>{{.Reason}}</td><td class="num">{{secs .RetryAfterSeconds}}</td></tr>
{{end}}</table>{{else}}<p>None yet.</p>{{end}}
</body></html>
`
