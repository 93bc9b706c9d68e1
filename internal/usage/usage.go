// Package usage reads the token usage that LLM vendors report in their
// answers, whole (JSON) and streamed (SSE), for OpenAI (chat completions and
// the Responses API), Anthropic (Messages) and Google Gemini
// (generateContent), each in the shape of the vendor's documented examples.
// It holds no state between calls; the watchers in internal/quota feed it.
package usage

import (
	"bytes"
	"encoding/json"
	"math"
)

// Tokens is what one answer reports: the tokens it read (prompt, input,
// cache reads and writes included), the tokens it wrote, and the total
// charged. Every field is at least zero.
type Tokens struct {
	Input, Output, Total int64
}

// Parser reads usage from a vendor's answers. Implementations must be safe
// for concurrent use; values they return must not be negative.
type Parser interface {
	// Body returns the usage of a whole JSON answer, and whether it reports
	// one.
	Body(body []byte) (Tokens, bool)
	// Event folds the data of one server-sent event into the usage seen so
	// far in the stream (prev; the zero Tokens at the start) and returns the
	// new usage, and whether this event reported any (when it did not, prev
	// stands).
	Event(prev Tokens, data []byte) (Tokens, bool)
}

// counts is every usage field the known vendors send; absent ones stay nil.
type counts struct {
	// OpenAI chat completions: prompt/completion/total_tokens. OpenAI
	// Responses: input/output/total_tokens. Anthropic: input/output_tokens
	// plus the cache counts, no total.
	TotalTokens      *int64 `json:"total_tokens"`
	PromptTokens     *int64 `json:"prompt_tokens"`
	CompletionTokens *int64 `json:"completion_tokens"`
	InputTokens      *int64 `json:"input_tokens"`
	OutputTokens     *int64 `json:"output_tokens"`
	CacheCreation    *int64 `json:"cache_creation_input_tokens"`
	CacheRead        *int64 `json:"cache_read_input_tokens"`
}

// geminiCounts is Gemini's usageMetadata.
type geminiCounts struct {
	TotalTokenCount      *int64 `json:"totalTokenCount"`
	PromptTokenCount     *int64 `json:"promptTokenCount"`
	CandidatesTokenCount *int64 `json:"candidatesTokenCount"`
	ThoughtsTokenCount   *int64 `json:"thoughtsTokenCount"`
}

// payload is the union of the places usage appears.
type payload struct {
	Type          string        `json:"type"`
	Usage         *counts       `json:"usage"`
	UsageMetadata *geminiCounts `json:"usageMetadata"`
	// OpenAI Responses stream: {"type":"response.completed","response":{"usage":...}}.
	Response *struct {
		Usage *counts `json:"usage"`
	} `json:"response"`
	// Anthropic stream: {"type":"message_start","message":{"usage":...}}.
	Message *struct {
		Usage *counts `json:"usage"`
	} `json:"message"`
}

// usageKey is in every payload that reports usage ("usage", "usageMetadata"):
// data without it is not decoded, so that the many chunks of a stream that
// carry only text cost a scan, not a JSON decode.
var usageKey = []byte(`"usage`)

func decode(data []byte) (payload, bool) {
	var p payload
	data = bytes.TrimLeft(data, space)
	if len(data) == 0 || data[0] != '{' || !bytes.Contains(data, usageKey) || json.Unmarshal(data, &p) != nil {
		return p, false
	}
	return p, true
}

// array reads a JSON array answer (Gemini's streamGenerateContent without
// alt=sse sends its chunks that way) as a stream of its elements.
func array(b []byte, event func(Tokens, []byte) (Tokens, bool)) (Tokens, bool) {
	var elems []json.RawMessage
	if json.Unmarshal(b, &elems) != nil {
		return Tokens{}, false
	}
	var t Tokens
	seen := false
	for _, e := range elems {
		if n, ok := event(t, e); ok {
			t, seen = n, true
		}
	}
	return t, seen
}

// space is JSON's whitespace.
const space = " \t\r\n"

// isArray: b's first non-space byte opens an array.
func isArray(b []byte) bool {
	b = bytes.TrimLeft(b, space)
	return len(b) > 0 && b[0] == '['
}

// v reads an optional count: absent or negative is zero.
func v(p *int64) int64 {
	if p == nil || *p < 0 {
		return 0
	}
	return *p
}

// add saturates instead of overflowing: a hostile count cannot wrap to a
// negative or small total.
func add(xs ...int64) int64 {
	var s int64
	for _, x := range xs {
		if x > math.MaxInt64-s {
			return math.MaxInt64
		}
		s += x
	}
	return s
}

// openAI reads OpenAI's usage (chat completions or Responses): the total
// when it is given, else the sum of its parts.
func openAI(c *counts) (Tokens, bool) {
	if c == nil {
		return Tokens{}, false
	}
	in := add(v(c.PromptTokens), v(c.InputTokens))
	out := add(v(c.CompletionTokens), v(c.OutputTokens))
	if c.TotalTokens != nil && *c.TotalTokens >= 0 {
		return Tokens{Input: in, Output: out, Total: *c.TotalTokens}, true
	}
	if c.PromptTokens == nil && c.CompletionTokens == nil && c.InputTokens == nil && c.OutputTokens == nil {
		return Tokens{}, false
	}
	return Tokens{Input: in, Output: out, Total: add(in, out)}, true
}

// anthropic reads Anthropic's usage: input (with the cache reads and writes,
// which count against its rate limits) plus output.
func anthropic(c *counts) (Tokens, bool) {
	if c == nil || c.InputTokens == nil && c.OutputTokens == nil {
		return Tokens{}, false
	}
	in := add(v(c.InputTokens), v(c.CacheCreation), v(c.CacheRead))
	out := v(c.OutputTokens)
	return Tokens{Input: in, Output: out, Total: add(in, out)}, true
}

func gemini(g *geminiCounts) (Tokens, bool) {
	if g == nil {
		return Tokens{}, false
	}
	in := v(g.PromptTokenCount)
	out := add(v(g.CandidatesTokenCount), v(g.ThoughtsTokenCount))
	if g.TotalTokenCount != nil && *g.TotalTokenCount >= 0 {
		return Tokens{Input: in, Output: out, Total: *g.TotalTokenCount}, true
	}
	if g.PromptTokenCount == nil && g.CandidatesTokenCount == nil {
		return Tokens{}, false
	}
	return Tokens{Input: in, Output: out, Total: add(in, out)}, true
}

// OpenAI reads OpenAI's chat completions (usage.total_tokens; in streams the
// final chunk sent with stream_options.include_usage) and Responses API
// (usage.total_tokens; in streams the response.completed event's
// response.usage).
var OpenAI Parser = openAIParser{}

type openAIParser struct{}

func (openAIParser) Body(b []byte) (Tokens, bool) {
	p, ok := decode(b)
	if !ok {
		return Tokens{}, false
	}
	return openAI(p.Usage)
}

func (x openAIParser) Event(prev Tokens, b []byte) (Tokens, bool) {
	p, ok := decode(b)
	if !ok {
		return prev, false
	}
	return x.event(prev, p)
}

func (openAIParser) event(prev Tokens, p payload) (Tokens, bool) {
	if p.Response != nil {
		// response.created and response.in_progress carry "usage": null.
		if t, ok := openAI(p.Response.Usage); ok {
			return t, true
		}
		return prev, false
	}
	if t, ok := openAI(p.Usage); ok {
		return t, true
	}
	return prev, false
}

// Anthropic reads Anthropic's Messages API: usage.input_tokens (plus
// cache_creation_input_tokens and cache_read_input_tokens) + output_tokens;
// in streams message_start's message.usage gives the input, and each
// message_delta's usage.output_tokens the output so far (cumulative).
var Anthropic Parser = anthropicParser{}

type anthropicParser struct{}

func (anthropicParser) Body(b []byte) (Tokens, bool) {
	p, ok := decode(b)
	if !ok {
		return Tokens{}, false
	}
	return anthropic(p.Usage)
}

func (x anthropicParser) Event(prev Tokens, b []byte) (Tokens, bool) {
	p, ok := decode(b)
	if !ok {
		return prev, false
	}
	return x.event(prev, p)
}

func (anthropicParser) event(prev Tokens, p payload) (Tokens, bool) {
	if p.Message != nil {
		if t, ok := anthropic(p.Message.Usage); ok {
			return t, true
		}
	}
	if p.Usage == nil {
		return prev, false
	}
	// message_delta: its output_tokens are cumulative; its input counts,
	// when present, replace the ones from message_start.
	t := prev
	if p.Usage.InputTokens != nil || p.Usage.CacheCreation != nil || p.Usage.CacheRead != nil {
		t.Input = add(v(p.Usage.InputTokens), v(p.Usage.CacheCreation), v(p.Usage.CacheRead))
	}
	if p.Usage.OutputTokens != nil {
		t.Output = v(p.Usage.OutputTokens)
	}
	t.Total = add(t.Input, t.Output)
	return t, true
}

// Gemini reads Google Gemini's usageMetadata.totalTokenCount (the whole
// answer, or in streams the last chunk's, which covers the stream so far;
// a JSON array answer, streamGenerateContent without alt=sse, is read as
// that stream).
var Gemini Parser = geminiParser{}

type geminiParser struct{}

func (x geminiParser) Body(b []byte) (Tokens, bool) {
	if isArray(b) {
		return array(b, x.Event)
	}
	p, ok := decode(b)
	if !ok {
		return Tokens{}, false
	}
	return gemini(p.UsageMetadata)
}

func (x geminiParser) Event(prev Tokens, b []byte) (Tokens, bool) {
	p, ok := decode(b)
	if !ok {
		return prev, false
	}
	return x.event(prev, p)
}

func (geminiParser) event(prev Tokens, p payload) (Tokens, bool) {
	if t, ok := gemini(p.UsageMetadata); ok {
		return t, true
	}
	return prev, false
}

// Auto recognises the vendor from the payload: usageMetadata is Gemini's;
// a usage with total_tokens, prompt_tokens or completion_tokens, or a
// response.usage, is OpenAI's; a usage with input_tokens and no total (or
// a message_start's message.usage, or a message_delta) is Anthropic's. A
// JSON array answer is read as a stream of its elements (Gemini's
// streamGenerateContent without alt=sse).
var Auto Parser = autoParser{}

type autoParser struct{}

func (x autoParser) Body(b []byte) (Tokens, bool) {
	if isArray(b) {
		return array(b, x.Event)
	}
	p, ok := decode(b)
	if !ok {
		return Tokens{}, false
	}
	switch {
	case p.UsageMetadata != nil:
		return gemini(p.UsageMetadata)
	case isOpenAI(p.Usage):
		return openAI(p.Usage)
	default:
		return anthropic(p.Usage)
	}
}

func (autoParser) Event(prev Tokens, b []byte) (Tokens, bool) {
	p, ok := decode(b)
	if !ok {
		return prev, false
	}
	switch {
	case p.UsageMetadata != nil:
		return geminiParser{}.event(prev, p)
	case p.Response != nil, isOpenAI(p.Usage):
		return openAIParser{}.event(prev, p)
	case p.Message != nil, p.Usage != nil:
		return anthropicParser{}.event(prev, p)
	}
	return prev, false
}

func isOpenAI(c *counts) bool {
	return c != nil && (c.TotalTokens != nil || c.PromptTokens != nil || c.CompletionTokens != nil)
}
