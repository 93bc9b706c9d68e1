package middleware

import (
	"fmt"
	"net"
	"net/http"
	"net/textproto"
)

// KeyFunc names the user a request counts against. An empty key means the
// request is not limited by this rule (let the handler reject anonymous
// requests, or give them a key of their own). Keys of any length are safe:
// the stores and the over-limit cache bound what one key costs.
type KeyFunc func(*http.Request) string

// KeyFromHeader keys requests by a header such as an API key. Prefer it (or
// KeyFromContext) to anything derived from the client's address.
func KeyFromHeader(name string) KeyFunc {
	name = textproto.CanonicalMIMEHeaderKey(name)
	return func(r *http.Request) string {
		if v := r.Header[name]; len(v) > 0 {
			return v[0]
		}
		return ""
	}
}

// KeyFromContext keys requests by the value that an authentication
// middleware stored in the request's context under key: a string, or a
// fmt.Stringer (its String()); anything else, or nothing, is the empty key
// (not limited).
//
// gin's c.Set values live in the gin.Context, not in the request, so a Gin
// authentication middleware stores the identity in the request's context
// for this to see it, before UserRateLimit runs:
//
//	type userKey struct{}
//
//	func auth(c *gin.Context) {
//		user := authenticate(c) // yours
//		c.Request = c.Request.WithContext(context.WithValue(c.Request.Context(), userKey{}, user))
//		c.Next()
//	}
//
//	r.Use(auth, middleware.UserRateLimit(middleware.UserRateLimitSettings{
//		Rate: rate, Key: middleware.KeyFromContext(userKey{})}))
func KeyFromContext(key any) KeyFunc {
	return func(r *http.Request) string {
		switch v := r.Context().Value(key).(type) {
		case string:
			return v
		case fmt.Stringer:
			return v.String()
		}
		return ""
	}
}

// KeyFromRemoteAddr keys requests by the IP address of the peer that sent
// them (http.Request.RemoteAddr without its port), never by a header: a
// client cannot choose it. Behind a proxy or load balancer every request
// comes from the proxy, so all would share one limit; there, put first a
// middleware you trust that rewrites RemoteAddr from the proxy's header
// (and only for requests from the proxy), or key by an API key or user id
// instead. A RemoteAddr that is not host:port is used whole.
func KeyFromRemoteAddr() KeyFunc {
	return func(r *http.Request) string {
		if host, _, err := net.SplitHostPort(r.RemoteAddr); err == nil {
			return host
		}
		return r.RemoteAddr
	}
}
