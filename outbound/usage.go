package outbound

import (
	"github.com/sluice-go/sluice/internal/usage"
)

// TokenUsage is the token usage a vendor reports for one answer.
type TokenUsage struct {
	// Input is the tokens the call read: its prompt, with the cache reads
	// and writes the vendor charges.
	Input int64
	// Output is the tokens it wrote, reasoning included.
	Output int64
	// Total is what the call is charged against GlobalRateLimitSettings.Tokens.
	Total int64
}

// UsageParser reads the token usage a vendor reports in its answers, for
// the global rate limiter's token quota (GlobalRateLimitSettings.Usage). The
// built-ins are OpenAIUsage, AnthropicUsage, GeminiUsage and AutoUsage;
// implement it for another vendor.
//
// The limiter watches the body as the caller reads it and calls the parser
// once the usage can be known: Body with the whole JSON answer (at most 1
// MiB; a larger answer keeps its estimate), or Event with the data of each
// event of an SSE stream in turn (the event's data: lines joined by
// newlines; a line or an event's data over 64 KiB skips the event). Only
// Total is charged: a negative Total counts as no usage reported (the
// estimate stands) and one above GlobalRateLimitSettings.MaxCost as MaxCost.
//
// An implementation must be safe for concurrent use (it holds no state of
// its own between calls: a stream's state is prev), must not keep the
// slices it is given, and should be quick: it runs inside the caller's
// Read.
type UsageParser interface {
	// Body returns the usage a whole JSON answer reports, and whether it
	// reports one.
	Body(body []byte) (TokenUsage, bool)
	// Event folds the data of one server-sent event into the usage seen so
	// far in the stream (prev; the zero TokenUsage at the start) and returns
	// the new usage and whether this event reported any (when it did not,
	// the returned usage is ignored and prev stands).
	Event(prev TokenUsage, data []byte) (TokenUsage, bool)
}

// The built-in parsers, each reading the vendor's documented answers, whole
// (JSON) and streamed (SSE).
var (
	// OpenAIUsage reads OpenAI's chat completions (usage.total_tokens; in
	// streams the last chunk's, sent with stream_options.include_usage) and
	// Responses API (usage.total_tokens; in streams the response.completed
	// event's response.usage.total_tokens). Without a total, the sum of the
	// input and output counts.
	OpenAIUsage UsageParser = builtinUsage{usage.OpenAI}
	// AnthropicUsage reads Anthropic's Messages API: usage.input_tokens,
	// cache_creation_input_tokens and cache_read_input_tokens, plus
	// output_tokens; in streams message_start's usage gives the input, and
	// the last message_delta's usage.output_tokens the output.
	AnthropicUsage UsageParser = builtinUsage{usage.Anthropic}
	// GeminiUsage reads Google Gemini's usageMetadata.totalTokenCount: of
	// generateContent's answer, or of the last chunk of
	// streamGenerateContent (with alt=sse, or the JSON array it sends
	// without).
	GeminiUsage UsageParser = builtinUsage{usage.Gemini}
	// AutoUsage, the default, recognises each of the above from the
	// payload: usageMetadata is Gemini's; a usage with total_tokens,
	// prompt_tokens or completion_tokens, or a response.usage, is OpenAI's;
	// a usage with input_tokens and no total, a message_start or a
	// message_delta is Anthropic's.
	AutoUsage UsageParser = builtinUsage{usage.Auto}
)

// builtinUsage is a UsageParser of internal/usage.
type builtinUsage struct{ p usage.Parser }

func (b builtinUsage) Body(body []byte) (TokenUsage, bool) {
	t, ok := b.p.Body(body)
	return TokenUsage(t), ok
}

func (b builtinUsage) Event(prev TokenUsage, data []byte) (TokenUsage, bool) {
	t, ok := b.p.Event(usage.Tokens(prev), data)
	return TokenUsage(t), ok
}

// usageParser returns p as the watchers' usage.Parser: nil is AutoUsage, a
// built-in is itself, and any other reports a negative Total as no usage.
func usageParser(p UsageParser) usage.Parser {
	switch b := p.(type) {
	case nil:
		return usage.Auto
	case builtinUsage:
		return b.p
	}
	return customUsage{p}
}

type customUsage struct{ p UsageParser }

func (c customUsage) Body(body []byte) (usage.Tokens, bool) {
	t, ok := c.p.Body(body)
	return usage.Tokens(t), ok && t.Total >= 0
}

func (c customUsage) Event(prev usage.Tokens, data []byte) (usage.Tokens, bool) {
	t, ok := c.p.Event(TokenUsage(prev), data)
	if !ok || t.Total < 0 {
		return prev, false
	}
	return usage.Tokens(t), true
}
