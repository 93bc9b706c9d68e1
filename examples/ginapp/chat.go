package main

import (
	"bufio"
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strings"
	"time"

	"github.com/gin-gonic/gin"

	"github.com/sluice-go/sluice"
)

// maxChatBody bounds the JSON body of POST /v1/chat.
const maxChatBody = 64 << 10

// maxAnswer bounds a vendor's non-streamed answer, decompressed: past it the
// call fails with 502 vendor/answer_too_large.
const maxAnswer = 4 << 20

// maxEvent bounds one event of a vendor's stream, all its lines together (the
// library's usage watcher bounds a line alike): past it the relay ends the
// stream with the in-band error vendor/event_too_large.
const maxEvent = 64 << 10

type chatRequest struct {
	Prompt string `json:"prompt"`
	Stream bool   `json:"stream"`
}

type vendorRequest struct {
	Model    string          `json:"model"`
	Stream   bool            `json:"stream"`
	Messages []vendorMessage `json:"messages"`
}

type vendorMessage struct {
	Role    string `json:"role"`
	Content string `json:"content"`
}

type vendorAnswer struct {
	Choices []struct {
		Message vendorMessage `json:"message"`
	} `json:"choices"`
	Usage struct {
		TotalTokens int `json:"total_tokens"`
	} `json:"usage"`
}

// chatHandler serves POST /v1/chat: it calls the vendor through the outbound
// chain and maps every outcome to a status and a JSON body.
func (a *App) chatHandler(c *gin.Context) {
	var in chatRequest
	body, err := io.ReadAll(http.MaxBytesReader(c.Writer, c.Request.Body, maxChatBody))
	if err != nil {
		var mbe *http.MaxBytesError
		if errors.As(err, &mbe) {
			writeError(c, http.StatusRequestEntityTooLarge, "request", "body_too_large",
				fmt.Sprintf("the body is limited to %d bytes", maxChatBody), 0)
			return
		}
		writeError(c, http.StatusBadRequest, "request", "bad_body", "could not read the body", 0)
		return
	}
	if err := json.Unmarshal(body, &in); err != nil {
		writeError(c, http.StatusBadRequest, "request", "bad_json", "the body must be JSON {\"prompt\": \"...\"}", 0)
		return
	}
	if strings.TrimSpace(in.Prompt) == "" {
		writeError(c, http.StatusBadRequest, "request", "empty_prompt", "prompt must not be empty", 0)
		return
	}

	vbody, _ := json.Marshal(vendorRequest{Model: "fake-1", Stream: in.Stream,
		Messages: []vendorMessage{{Role: "user", Content: in.Prompt}}})
	ctx := c.Request.Context()
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, a.vendorURL+"/v1/chat/completions",
		bytes.NewReader(vbody))
	if err != nil {
		writeError(c, http.StatusInternalServerError, "app", "bad_vendor_url", "cannot build the vendor request", 0)
		return
	}
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("Idempotency-Key", newKey()) // one key for every attempt: makes the POST replay-safe
	if in.Stream {
		req.Header.Set("Accept", "text/event-stream")
	}
	resp, err := a.client.Do(req)
	if err != nil {
		writeCallError(c, err)
		return
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		writeCallError(c, sluice.VendorError(resp))
		return
	}
	if in.Stream {
		relaySSE(c, ctx, resp.Body)
		return
	}
	raw, err := io.ReadAll(io.LimitReader(resp.Body, maxAnswer+1))
	if err != nil {
		if sluice.ErrorOf(err) != nil || ctx.Err() != nil {
			writeCallError(c, err)
			return
		}
		writeError(c, http.StatusBadGateway, "vendor", "bad_answer", "the vendor's answer could not be read", 0)
		return
	}
	if len(raw) > maxAnswer {
		writeError(c, http.StatusBadGateway, "vendor", "answer_too_large",
			fmt.Sprintf("the vendor's answer exceeds %d bytes", maxAnswer), 0)
		return
	}
	var ans vendorAnswer
	if err := json.Unmarshal(raw, &ans); err != nil || len(ans.Choices) == 0 {
		writeError(c, http.StatusBadGateway, "vendor", "bad_answer", "the vendor's answer could not be read", 0)
		return
	}
	c.JSON(http.StatusOK, gin.H{"answer": ans.Choices[0].Message.Content,
		"usage": gin.H{"total_tokens": ans.Usage.TotalTokens}})
}

// writeCallError answers an outbound error with sluice.WriteError: the
// status, capped Retry-After and JSON body of sluice.ProblemOf, the one table
// in docs/reference.md (a vendor's 429 that outlived the retries is 503
// vendor/vendor_rate_limited, the request's own deadline 504
// request/deadline_exceeded, an unreachable vendor 502 vendor/unreachable),
// and never the error's own text.
func writeCallError(c *gin.Context, err error) {
	sluice.WriteError(c.Writer, err)
	c.Abort()
}

// writeError answers one of the app's own errors (auth, request, vendor
// answers it cannot use) in the same JSON shape, through sluice.Problem.
func writeError(c *gin.Context, status int, layer, reason, msg string, retryAfter time.Duration) {
	sluice.Problem{Status: status, Layer: layer, Reason: reason, Message: msg,
		RetryAfter: min(retryAfter, sluice.MaxRetryAfter)}.Write(c.Writer)
	c.Abort()
}

// relaySSE copies the vendor's event stream event by event, flushing after
// each, until the vendor ends it or the client goes away. It holds at most one
// event (maxEvent) in memory and writes only whole events, so that when the
// stream fails (the vendor breaks it, the request's deadline passes, an event
// is too large) the partial event is dropped and an in-band error event,
// starting on a line boundary, ends the stream. A client that stops reading
// makes Write fail at the request's deadline (the Deadline middleware's write
// deadline), which ends the relay and releases the vendor call.
func relaySSE(c *gin.Context, ctx context.Context, body io.Reader) {
	c.Header("Content-Type", "text/event-stream")
	c.Header("Cache-Control", "no-cache")
	c.Status(http.StatusOK)
	r := bufio.NewReaderSize(body, maxEvent)
	var event []byte // the lines of the current event so far
	for {
		line, err := r.ReadSlice('\n')
		if errors.Is(err, bufio.ErrBufferFull) || len(event)+len(line) > maxEvent {
			streamProblem(c, sluice.Problem{Layer: sluice.ProblemLayerVendor, Reason: "event_too_large",
				Message: fmt.Sprintf("the vendor sent an event over %d bytes", maxEvent)})
			return
		}
		event = append(event, line...)
		if err == nil && len(bytes.TrimSpace(line)) != 0 {
			continue // the event goes on
		}
		if err != nil && err != io.EOF {
			// The stream broke after the status was sent: tell the client
			// in-band, the only place left.
			switch {
			case ctx.Err() != nil:
				streamProblem(c, sluice.ProblemOf(ctx.Err()))
			case sluice.ErrorOf(err) != nil:
				streamProblem(c, sluice.ProblemOf(err))
			default:
				streamProblem(c, sluice.Problem{Layer: sluice.ProblemLayerVendor, Reason: "stream_broken",
					Message: "the vendor's stream broke"})
			}
			return
		}
		// A whole event, or what the vendor sent before it ended the stream.
		if _, werr := c.Writer.Write(event); werr != nil {
			return
		}
		c.Writer.Flush()
		if err == io.EOF {
			if ctx.Err() != nil {
				// The stream ended as our deadline passed: a clean end here
				// is the cut our cancellation caused (seen under load), not
				// the vendor's last word.
				streamProblem(c, sluice.ProblemOf(ctx.Err()))
			}
			return
		}
		event = event[:0]
	}
}

// streamProblem ends a relayed stream with p as an in-band error event, whose
// data is p's JSON error body (sluice.Problem's, as every other answer).
func streamProblem(c *gin.Context, p sluice.Problem) {
	data, _ := p.MarshalJSON()
	_, _ = fmt.Fprintf(c.Writer, "event: error\ndata: %s\n\n", data)
	c.Writer.Flush()
}

func newKey() string {
	var b [16]byte
	_, _ = rand.Read(b[:])
	return hex.EncodeToString(b[:])
}
