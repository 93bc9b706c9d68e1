// Package usagetest holds answers shaped like each LLM vendor's documented
// examples, whole (JSON) and streamed (SSE), with the usage each reports: the
// fixtures of the usage parsers' tests, of the quota's watchers and of the
// outbound chain's end-to-end tests.
package usagetest

// Answer is one vendor answer.
type Answer struct {
	// Name says whose answer it is ("anthropic stream").
	Name string
	// Vendor is "openai", "anthropic" or "gemini".
	Vendor string
	// ContentType is what the vendor sends it with.
	ContentType string
	// Body is the answer: a JSON document, or an SSE stream.
	Body string
	// Input, Output and Total are the usage it reports.
	Input, Output, Total int64
}

// Stream reports whether the answer is an SSE stream.
func (a Answer) Stream() bool { return a.ContentType == SSE }

// The content types vendors answer with.
const (
	JSON = "application/json"
	SSE  = "text/event-stream"
)

// Payloads shaped like each vendor's documented examples.
const (
	OpenAIChat = `{"id":"chatcmpl-abc123","object":"chat.completion","created":1677858242,"model":"gpt-4o-mini",
"usage":{"prompt_tokens":13,"completion_tokens":7,"total_tokens":20,"completion_tokens_details":{"reasoning_tokens":0}},
"choices":[{"message":{"role":"assistant","content":"\n\nThis is a test!"},"finish_reason":"stop","index":0}]}`

	// OpenAIChatStream is a chat completion streamed with
	// stream_options.include_usage: the usage comes in the last chunk.
	OpenAIChatStream = `data: {"id":"chatcmpl-123","object":"chat.completion.chunk","created":1694268190,"model":"gpt-4o-mini","choices":[{"index":0,"delta":{"role":"assistant","content":""},"finish_reason":null}],"usage":null}

data: {"id":"chatcmpl-123","object":"chat.completion.chunk","created":1694268190,"model":"gpt-4o-mini","choices":[{"index":0,"delta":{"content":"Hello"},"finish_reason":null}],"usage":null}

data: {"id":"chatcmpl-123","object":"chat.completion.chunk","created":1694268190,"model":"gpt-4o-mini","choices":[],"usage":{"prompt_tokens":9,"completion_tokens":12,"total_tokens":21}}

data: [DONE]

`

	OpenAIResponses = `{"id":"resp_67ccd2bed1ec8190b14f964abc054267","object":"response","created_at":1741476542,"status":"completed",
"model":"gpt-4.1-2025-04-14","output":[{"type":"message","id":"msg_67ccd2bf17f0819081ff3bb2cf6508e6","status":"completed","role":"assistant",
"content":[{"type":"output_text","text":"In a peaceful grove...","annotations":[]}]}],
"usage":{"input_tokens":36,"input_tokens_details":{"cached_tokens":0},"output_tokens":87,"output_tokens_details":{"reasoning_tokens":0},"total_tokens":123}}`

	// OpenAIResponsesStream is a Responses API stream: the usage comes in
	// the response.completed event.
	OpenAIResponsesStream = `event: response.created
data: {"type":"response.created","response":{"id":"resp_67c9fdcecf488190bdd9a0409de3a1ec","object":"response","status":"in_progress","output":[],"usage":null}}

event: response.output_text.delta
data: {"type":"response.output_text.delta","item_id":"msg_67c9fdcf37fc8190ba82116e33fb28c5","output_index":0,"content_index":0,"delta":"Hi"}

event: response.completed
data: {"type":"response.completed","response":{"id":"resp_67c9fdcecf488190bdd9a0409de3a1ec","object":"response","status":"completed","usage":{"input_tokens":37,"output_tokens":11,"output_tokens_details":{"reasoning_tokens":0},"total_tokens":48}}}

`

	AnthropicBody = `{"id":"msg_013Zva2CMHLNnXjNJJKqJ2EF","type":"message","role":"assistant","model":"claude-sonnet-4-20250514",
"content":[{"type":"text","text":"Hi! My name is Claude."}],"stop_reason":"end_turn","stop_sequence":null,
"usage":{"input_tokens":2095,"output_tokens":503,"cache_creation_input_tokens":100,"cache_read_input_tokens":20}}`

	// AnthropicStream is a Messages stream: message_start's usage has the
	// input, the last message_delta's the output.
	AnthropicStream = `event: message_start
data: {"type": "message_start", "message": {"id": "msg_1nZdL29xx5MUA1yADyHTEsnR8uuvGzszyY", "type": "message", "role": "assistant", "content": [], "model": "claude-opus-4-20250514", "stop_reason": null, "stop_sequence": null, "usage": {"input_tokens": 25, "output_tokens": 1}}}

event: content_block_start
data: {"type": "content_block_start", "index": 0, "content_block": {"type": "text", "text": ""}}

event: ping
data: {"type": "ping"}

event: content_block_delta
data: {"type": "content_block_delta", "index": 0, "delta": {"type": "text_delta", "text": "Hello"}}

event: content_block_stop
data: {"type": "content_block_stop", "index": 0}

event: message_delta
data: {"type": "message_delta", "delta": {"stop_reason": "end_turn", "stop_sequence":null}, "usage": {"output_tokens": 15}}

event: message_stop
data: {"type": "message_stop"}

`

	GeminiBody = `{"candidates":[{"content":{"parts":[{"text":"The sky is blue because..."}],"role":"model"},"finishReason":"STOP","index":0}],
"usageMetadata":{"promptTokenCount":8,"candidatesTokenCount":150,"totalTokenCount":158},"modelVersion":"gemini-2.0-flash"}`

	// GeminiStream is streamGenerateContent?alt=sse: each chunk's
	// usageMetadata covers the stream so far; its lines end in CRLF.
	GeminiStream = "data: {\"candidates\": [{\"content\": {\"parts\": [{\"text\": \"The\"}],\"role\": \"model\"},\"index\": 0}],\"usageMetadata\": {\"promptTokenCount\": 8,\"totalTokenCount\": 8},\"modelVersion\": \"gemini-2.0-flash\"}\r\n\r\n" +
		"data: {\"candidates\": [{\"content\": {\"parts\": [{\"text\": \" sky is blue\"}],\"role\": \"model\"},\"finishReason\": \"STOP\",\"index\": 0}],\"usageMetadata\": {\"promptTokenCount\": 8,\"candidatesTokenCount\": 40,\"totalTokenCount\": 48},\"modelVersion\": \"gemini-2.0-flash\"}\r\n\r\n"

	// GeminiArray is streamGenerateContent without alt=sse: one JSON
	// array of the chunks.
	GeminiArray = `[{"candidates": [{"content": {"parts": [{"text": "The"}],"role": "model"},"index": 0}],"usageMetadata": {"promptTokenCount": 8,"totalTokenCount": 8},"modelVersion": "gemini-2.0-flash"}
,
{"candidates": [{"content": {"parts": [{"text": " sky is blue"}],"role": "model"},"finishReason": "STOP","index": 0}],"usageMetadata": {"promptTokenCount": 8,"candidatesTokenCount": 40,"totalTokenCount": 48},"modelVersion": "gemini-2.0-flash"}
]`
)

// Answers is every answer above, with its usage.
var Answers = []Answer{
	{"openai chat", "openai", JSON, OpenAIChat, 13, 7, 20},
	{"openai chat stream", "openai", SSE, OpenAIChatStream, 9, 12, 21},
	{"openai responses", "openai", JSON, OpenAIResponses, 36, 87, 123},
	{"openai responses stream", "openai", SSE, OpenAIResponsesStream, 37, 11, 48},
	{"anthropic", "anthropic", JSON, AnthropicBody, 2215, 503, 2718},
	{"anthropic stream", "anthropic", SSE, AnthropicStream, 25, 15, 40},
	{"gemini", "gemini", JSON, GeminiBody, 8, 150, 158},
	{"gemini stream", "gemini", SSE, GeminiStream, 8, 40, 48},
	{"gemini array", "gemini", JSON, GeminiArray, 8, 40, 48},
}
