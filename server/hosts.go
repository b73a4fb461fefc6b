package server

import (
	"fmt"
	"net"
	"net/http"
	"net/url"
	"strings"

	"github.com/vmcp/vmcp/config"
	"github.com/vmcp/vmcp/jsonrpc"
)

// rejectDNSRebinding refuses (403, on every path) a request whose Host or
// Origin is not allowed by server.allowedHosts and server.allowedOrigins:
// a web page that rebinds its own name to vmcp's address, or that calls vmcp
// from another site, must not drive or read vmcp from a browser.
func (s *Server) rejectDNSRebinding(w http.ResponseWriter, r *http.Request) bool {
	why := checkHostOrigin(s.cfg.Server.AllowedHosts, s.cfg.Server.AllowedOrigins, loopbackConn(r), r.Host, r.Header.Values("Origin"))
	if why == "" {
		return false
	}
	s.log.Debug("request refused (DNS-rebinding protection)", "reason", why)
	jsonrpc.WriteError(w, http.StatusForbidden, nil, jsonrpc.Error{Code: jsonrpc.CodeInvalidRequest, Message: why})
	return true
}

// loopbackConn reports whether r arrived over a loopback connection (the
// local address of the connection, so a listener on 0.0.0.0 reached through
// 127.0.0.1 counts).
func loopbackConn(r *http.Request) bool {
	local, ok := r.Context().Value(http.LocalAddrContextKey).(net.Addr)
	return ok && local != nil && isLoopback(local.String())
}

// checkHostOrigin returns why a request with this Host and these Origin
// header values is refused, or "" when it is allowed:
//
//   - Host: a loopback name is always allowed, and so is a match of an
//     allowedHosts entry ("*": any; "name": any port; "name:port": that
//     port). With no entries, any Host is allowed on a non-loopback
//     connection, and only loopback names on a loopback connection.
//   - Origin (when present): allowed when allowedOrigins has "*" or the
//     origin itself, or when its host[:port] passes the Host rule above.
//     A malformed or opaque ("null") origin is refused unless "*" is listed.
func checkHostOrigin(allowedHosts, allowedOrigins []string, loopback bool, host string, origins []string) string {
	if !hostAllowed(allowedHosts, loopback, host) {
		if len(allowedHosts) == 0 {
			return fmt.Sprintf("Host %q is not a loopback name", host)
		}
		return fmt.Sprintf("Host %q is not allowed (server.allowedHosts)", host)
	}
	for _, origin := range origins {
		if !originAllowed(allowedHosts, allowedOrigins, loopback, origin) {
			return fmt.Sprintf("Origin %q is not allowed (server.allowedOrigins)", origin)
		}
	}
	return ""
}

func hostAllowed(allowed []string, loopback bool, hostport string) bool {
	if isLoopback(hostport) {
		return true
	}
	if len(allowed) == 0 {
		return !loopback
	}
	host, port := splitHostPort(hostport)
	if host == "" {
		return false
	}
	for _, entry := range allowed {
		if entry == "*" {
			return true
		}
		eh, ep := splitHostPort(entry)
		if strings.EqualFold(eh, host) && (ep == "" || ep == port) {
			return true
		}
	}
	return false
}

func originAllowed(allowedHosts, allowedOrigins []string, loopback bool, origin string) bool {
	origin = strings.TrimSpace(origin)
	for _, entry := range allowedOrigins {
		if entry == "*" || strings.EqualFold(strings.TrimSuffix(entry, "/"), strings.TrimSuffix(origin, "/")) {
			return true
		}
	}
	u, err := url.Parse(origin)
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		return false
	}
	return hostAllowed(allowedHosts, loopback, u.Host)
}

// splitHostPort splits "host", "host:port", "[v6]", "[v6]:port" or a bare
// IPv6 address into host (without brackets) and port ("" when absent).
func splitHostPort(hostport string) (host, port string) {
	if h, p, err := net.SplitHostPort(hostport); err == nil {
		return h, p
	}
	return strings.Trim(hostport, "[]"), ""
}

// isLoopback reports whether hostport (host, host:port or [v6]:port) is a
// loopback name: localhost or a loopback IP.
func isLoopback(hostport string) bool {
	host, _, err := net.SplitHostPort(hostport)
	if err != nil {
		host = hostport
	}
	return config.IsLoopbackHost(host)
}
