//go:build tools

// Package tools pins programs used only by tests and scripts (the Jaeger
// all-in-one binary), so their dependencies never reach the library's go.mod.
package tools

import (
	_ "github.com/jaegertracing/jaeger/cmd/jaeger"
)
