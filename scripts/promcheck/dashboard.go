package main

import (
	"encoding/json"
	"fmt"
	"os"
	"strings"
)

// panelQuery is one query (target) of one dashboard panel.
type panelQuery struct {
	panel, refID, expr string
}

type panel struct {
	Title   string  `json:"title"`
	Type    string  `json:"type"`
	Panels  []panel `json:"panels"` // a collapsed row's panels
	Targets []struct {
		RefID string `json:"refId"`
		Expr  string `json:"expr"`
	} `json:"targets"`
}

// variables are what Grafana would put in place of the dashboard's
// variables: the scrape job, and a rate window a few scrapes long.
var variables = strings.NewReplacer("$__rate_interval", "30s", "$job", job)

// loadDashboard reads every query of every panel, rows' panels included, with
// the variables replaced. A panel without a query, or a query that uses a
// variable promcheck does not know, is an error.
func loadDashboard(path string) ([]panelQuery, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	var d struct {
		Panels []panel `json:"panels"`
	}
	if err := json.Unmarshal(b, &d); err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	var qs []panelQuery
	var walk func([]panel) error
	walk = func(ps []panel) error {
		for _, p := range ps {
			if p.Type == "row" {
				if err := walk(p.Panels); err != nil {
					return err
				}
				continue
			}
			if len(p.Targets) == 0 {
				return fmt.Errorf("%s: panel %q has no query", path, p.Title)
			}
			for _, t := range p.Targets {
				expr := variables.Replace(t.Expr)
				if strings.Contains(expr, "$") {
					return fmt.Errorf("%s: panel %q uses a variable promcheck does not know: %s", path, p.Title, t.Expr)
				}
				qs = append(qs, panelQuery{panel: p.Title, refID: t.RefID, expr: expr})
			}
		}
		return nil
	}
	if err := walk(d.Panels); err != nil {
		return nil, err
	}
	if len(qs) == 0 {
		return nil, fmt.Errorf("%s: no queries; the check would prove nothing", path)
	}
	return qs, nil
}
