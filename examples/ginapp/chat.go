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
	"github.com/sluice-go/sluice/internal/httpx"
	"github.com/sluice-go/sluice/outbound"
)

// maxChatBody bounds the JSON body of POST /v1/chat.
const maxChatBody = 64 << 10

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
		a.writeCallError(c, ctx, err)
		return
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		writeVendorStatus(c, resp.StatusCode, retryAfterOf(resp))
		return
	}
	if in.Stream {
		relaySSE(c, resp.Body)
		return
	}
	var ans vendorAnswer
	if err := json.NewDecoder(io.LimitReader(resp.Body, 4<<20)).Decode(&ans); err != nil || len(ans.Choices) == 0 {
		if e := sluice.ErrorOf(err); e != nil {
			a.writeCallError(c, ctx, err)
			return
		}
		writeError(c, http.StatusBadGateway, "vendor", "bad_answer", "the vendor's answer could not be read", 0)
		return
	}
	c.JSON(http.StatusOK, gin.H{"answer": ans.Choices[0].Message.Content,
		"usage": gin.H{"total_tokens": ans.Usage.TotalTokens}})
}

// writeCallError maps an outbound error: sluice layers by sluice.HTTPStatus,
// a vendor status that outlived the retries by writeVendorStatus.
func (a *App) writeCallError(c *gin.Context, ctx context.Context, err error) {
	if ctx.Err() != nil && sluice.ErrorOf(err) == nil {
		// The client went away (or the request's deadline passed before any
		// layer decided); nobody reads the answer, but say what happened.
		writeError(c, http.StatusGatewayTimeout, "app", "request_deadline", "the request's time budget ran out", 0)
		return
	}
	var se *outbound.StatusError
	if errors.As(err, &se) {
		ra := time.Duration(0)
		if e := sluice.ErrorOf(err); e != nil {
			ra = e.RetryAfter
		}
		writeVendorStatus(c, se.StatusCode, ra)
		return
	}
	e := sluice.ErrorOf(err)
	if e == nil {
		writeError(c, http.StatusBadGateway, "vendor", "unreachable", "the vendor could not be reached", 0)
		return
	}
	ra := e.RetryAfter
	status := sluice.HTTPStatus(e)
	if status == http.StatusServiceUnavailable && ra <= 0 {
		ra = time.Second
	}
	writeError(c, status, string(e.Layer), string(e.Reason), e.Error(), ra)
}

// writeVendorStatus maps a vendor's error status: its rate limits (429, and
// 503 with Retry-After) become 503 with Retry-After, anything else (a 503
// without Retry-After included) 502, as docs/example-app.md says.
func writeVendorStatus(c *gin.Context, code int, ra time.Duration) {
	if code == http.StatusTooManyRequests || (code == http.StatusServiceUnavailable && ra > 0) {
		if ra <= 0 {
			ra = time.Second
		}
		writeError(c, http.StatusServiceUnavailable, "vendor", "vendor_rate_limited",
			fmt.Sprintf("the vendor answered %d", code), ra)
		return
	}
	writeError(c, http.StatusBadGateway, "vendor", "vendor_error", fmt.Sprintf("the vendor answered %d", code), 0)
}

// maxRetryAfter caps the Retry-After the app sends: a vendor may ask for
// years (or send garbage that parses as years); our clients get at most this.
const maxRetryAfter = time.Hour

func writeError(c *gin.Context, status int, layer, reason, msg string, retryAfter time.Duration) {
	retryAfter = min(retryAfter, maxRetryAfter)
	if retryAfter > 0 {
		c.Header("Retry-After", sluice.RetryAfterSeconds(retryAfter))
	}
	c.AbortWithStatusJSON(status, gin.H{"error": gin.H{"layer": layer, "reason": reason, "message": msg}})
}

func retryAfterOf(resp *http.Response) time.Duration {
	d, _ := httpx.RetryAfter(resp.Header, time.Now())
	return d
}

// relaySSE copies the vendor's event stream line by line, flushing after
// each event, until the vendor ends it or the client goes away.
func relaySSE(c *gin.Context, body io.Reader) {
	c.Header("Content-Type", "text/event-stream")
	c.Header("Cache-Control", "no-cache")
	c.Status(http.StatusOK)
	r := bufio.NewReaderSize(body, 16<<10)
	for {
		line, err := r.ReadBytes('\n')
		if len(line) > 0 {
			if _, werr := c.Writer.Write(line); werr != nil {
				return
			}
			if len(bytes.TrimSpace(line)) == 0 {
				c.Writer.Flush()
			}
		}
		if err != nil {
			if err != io.EOF {
				// The stream broke after the status was sent: tell the client
				// in-band, the only place left.
				e := sluice.ErrorOf(err)
				reason := "stream_broken"
				if e != nil {
					reason = string(e.Reason)
				}
				fmt.Fprintf(c.Writer, "event: error\ndata: {\"error\":{\"reason\":%q}}\n\n", reason)
			}
			c.Writer.Flush()
			return
		}
	}
}

func newKey() string {
	var b [16]byte
	_, _ = rand.Read(b[:])
	return hex.EncodeToString(b[:])
}
