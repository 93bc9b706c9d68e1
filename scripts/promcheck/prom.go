package main

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"net/url"
	"strconv"
	"time"
)

// promAPI is the part of Prometheus' HTTP API the check reads.
type promAPI struct{ base string }

func (p *promAPI) get(path string, q url.Values, data any) error {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, p.base+path+"?"+q.Encode(), nil)
	if err != nil {
		return err
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	var env struct {
		Status string          `json:"status"`
		Error  string          `json:"error"`
		Data   json.RawMessage `json:"data"`
	}
	if err := json.NewDecoder(resp.Body).Decode(&env); err != nil {
		return fmt.Errorf("%s: %s: %w", path, resp.Status, err)
	}
	if env.Status != "success" {
		return fmt.Errorf("%s: %s: %s", path, resp.Status, env.Error)
	}
	return json.Unmarshal(env.Data, data)
}

type queryResult struct {
	panelQuery
	first string // the first sample that is a number, preferring one that is not 0, with its labels
	err   error
}

func (r queryResult) hasData() bool { return r.err == nil && r.first != "" }

func allHaveData(rs []queryResult) bool {
	for _, r := range rs {
		if !r.hasData() {
			return false
		}
	}
	return len(rs) > 0
}

// queryAll runs each query as an instant query now. A query has data when it
// returns a sample that is a number: a quantile of no observations is NaN,
// which a panel draws as nothing. The value reported is the first that is not
// 0 (the layers that are idle export their counters at 0), else the first.
func (p *promAPI) queryAll(qs []panelQuery) []queryResult {
	out := make([]queryResult, len(qs))
	for i, q := range qs {
		out[i].panelQuery = q
		var data struct {
			ResultType string `json:"resultType"`
			Result     []struct {
				Metric map[string]string `json:"metric"`
				Value  [2]any            `json:"value"`
			} `json:"result"`
		}
		if err := p.get("/api/v1/query", url.Values{"query": {q.expr}}, &data); err != nil {
			out[i].err = err
			continue
		}
		for _, s := range data.Result {
			v, _ := s.Value[1].(string)
			f, err := strconv.ParseFloat(v, 64)
			if err != nil || f != f { // NaN
				continue
			}
			if out[i].first == "" || f != 0 {
				out[i].first = fmt.Sprintf("%.4g %v", f, s.Metric)
			}
			if f != 0 {
				break
			}
		}
	}
	return out
}

type alert struct {
	Labels map[string]string `json:"labels"`
	State  string            `json:"state"`
}

func (p *promAPI) alerts() ([]alert, error) {
	var data struct {
		Alerts []alert `json:"alerts"`
	}
	err := p.get("/api/v1/alerts", nil, &data)
	return data.Alerts, err
}

func firing(as []alert, name string) bool {
	for _, a := range as {
		if a.Labels["alertname"] == name && a.State == "firing" {
			return true
		}
	}
	return false
}

// waitRulesLoaded waits until Prometheus lists the alert rule: a rules file
// that failed to load is only a line in its log.
func (p *promAPI) waitRulesLoaded(name string, d time.Duration) error {
	deadline := time.Now().Add(d)
	for {
		var data struct {
			Groups []struct {
				Rules []struct {
					Name string `json:"name"`
				} `json:"rules"`
			} `json:"groups"`
		}
		err := p.get("/api/v1/rules", url.Values{"type": {"alert"}}, &data)
		for _, g := range data.Groups {
			for _, r := range g.Rules {
				if r.Name == name {
					return nil
				}
			}
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("Prometheus has not loaded the rule %s after %s (last error: %v)", name, d, err)
		}
		time.Sleep(200 * time.Millisecond) // polling the rules API
	}
}
