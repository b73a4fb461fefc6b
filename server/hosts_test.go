package server

import (
	"context"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
)

func TestCheckHostOrigin(t *testing.T) {
	t.Parallel()
	hosts := []string{"vmcp.example.com", "10.0.0.5:4483", "[fe80::1]"}
	origins := []string{"https://app.example.com"}
	cases := []struct {
		name           string
		hosts, origins []string
		loopback       bool
		host           string
		origin         []string
		refused        string // "" allowed; else a part of the reason
	}{
		// Defaults, loopback connection: loopback names only.
		{"default loopback: localhost", nil, nil, true, "localhost:4483", nil, ""},
		{"default loopback: 127.0.0.1", nil, nil, true, "127.0.0.1:4483", nil, ""},
		{"default loopback: 127.0.0.2 no port", nil, nil, true, "127.0.0.2", nil, ""},
		{"default loopback: [::1]", nil, nil, true, "[::1]:4483", nil, ""},
		{"default loopback: LOCALHOST", nil, nil, true, "LOCALHOST", nil, ""},
		{"default loopback: rebound name", nil, nil, true, "evil.example:4483", nil, `Host "evil.example:4483" is not a loopback name`},
		{"default loopback: empty Host", nil, nil, true, "", nil, "is not a loopback name"},
		{"default loopback: LAN IP", nil, nil, true, "192.168.1.2:4483", nil, "is not a loopback name"},
		{"default loopback: loopback origin", nil, nil, true, "localhost:4483", []string{"http://localhost:6274"}, ""},
		{"default loopback: same loopback origin", nil, nil, true, "127.0.0.1:4483", []string{"http://127.0.0.1:4483"}, ""},
		{"default loopback: [::1] origin", nil, nil, true, "localhost", []string{"http://[::1]:3000"}, ""},
		{"default loopback: foreign origin", nil, nil, true, "localhost:4483", []string{"https://evil.example"}, `Origin "https://evil.example" is not allowed`},
		{"default loopback: rebinding pair", nil, nil, true, "evil.example.com", []string{"http://evil.example.com"}, "Host"},
		{"default loopback: null origin", nil, nil, true, "localhost", []string{"null"}, "Origin"},
		{"default loopback: file origin", nil, nil, true, "localhost", []string{"file://"}, "Origin"},
		{"default loopback: two origins, one foreign", nil, nil, true, "localhost", []string{"http://localhost", "https://evil.example"}, "Origin"},

		// Defaults, non-loopback connection: anything goes.
		{"default network: any host", nil, nil, false, "vmcp.example.com", nil, ""},
		{"default network: any origin", nil, nil, false, "vmcp.example.com", []string{"https://elsewhere.example"}, ""},
		{"default network: loopback host", nil, nil, false, "localhost:4483", nil, ""},
		{"default network: garbage origin", nil, nil, false, "vmcp.example.com", []string{"::"}, "Origin"},

		// A list: its entries and the loopback names, on either connection.
		{"list: name any port", hosts, nil, false, "vmcp.example.com:8443", nil, ""},
		{"list: name no port", hosts, nil, true, "vmcp.example.com", nil, ""},
		{"list: name other case", hosts, nil, false, "VMCP.Example.COM", nil, ""},
		{"list: host:port match", hosts, nil, false, "10.0.0.5:4483", nil, ""},
		{"list: host:port other port", hosts, nil, false, "10.0.0.5:80", nil, `Host "10.0.0.5:80" is not allowed (server.allowedHosts)`},
		{"list: host:port without port", hosts, nil, false, "10.0.0.5", nil, "not allowed"},
		{"list: v6 entry", hosts, nil, false, "[fe80::1]:4483", nil, ""},
		{"list: other name on network", hosts, nil, false, "evil.example", nil, "not allowed (server.allowedHosts)"},
		{"list: subdomain is not the name", hosts, nil, false, "a.vmcp.example.com", nil, "not allowed"},
		{"list: loopback still allowed on loopback", hosts, nil, true, "localhost:4483", nil, ""},
		{"list: loopback allowed on network", hosts, nil, false, "127.0.0.1:4483", nil, ""},
		{"list: origin of a listed host", hosts, nil, false, "vmcp.example.com", []string{"https://vmcp.example.com"}, ""},
		{"list: origin of host:port entry", hosts, nil, false, "vmcp.example.com", []string{"http://10.0.0.5:4483"}, ""},
		{"list: origin wrong port", hosts, nil, false, "vmcp.example.com", []string{"http://10.0.0.5:8080"}, "Origin"},
		{"list: foreign origin", hosts, nil, false, "vmcp.example.com", []string{"https://evil.example"}, "Origin"},
		{"star host", []string{"*"}, nil, true, "anything.example", []string{"https://anything.example"}, ""},

		// allowedOrigins.
		{"origins: listed", hosts, origins, false, "vmcp.example.com", []string{"https://app.example.com"}, ""},
		{"origins: listed, other case and slash", hosts, origins, false, "vmcp.example.com", []string{"HTTPS://APP.example.com/"}, ""},
		{"origins: other scheme", hosts, origins, false, "vmcp.example.com", []string{"http://app.example.com"}, "Origin"},
		{"origins: other port", hosts, origins, false, "vmcp.example.com", []string{"https://app.example.com:8443"}, "Origin"},
		{"origins: on loopback defaults", nil, origins, true, "localhost", []string{"https://app.example.com"}, ""},
		{"origins: do not open the Host check", nil, origins, true, "app.example.com", nil, "Host"},
		{"origins: star", nil, []string{"*"}, true, "localhost", []string{"null"}, ""},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			got := checkHostOrigin(tc.hosts, tc.origins, tc.loopback, tc.host, tc.origin)
			switch {
			case tc.refused == "" && got != "":
				t.Fatalf("refused (%s), want allowed", got)
			case tc.refused != "" && got == "":
				t.Fatalf("allowed, want refused (%s)", tc.refused)
			case tc.refused != "" && !strings.Contains(got, tc.refused):
				t.Fatalf("reason %q, want it to contain %q", got, tc.refused)
			}
		})
	}
}

// TestLoopbackConn: the connection's local address decides, not the Host.
func TestLoopbackConn(t *testing.T) {
	t.Parallel()
	for addr, want := range map[string]bool{"127.0.0.1:4483": true, "[::1]:4483": true, "10.0.0.5:4483": false, "[2001:db8::1]:4483": false} {
		tcp, err := net.ResolveTCPAddr("tcp", addr)
		if err != nil {
			t.Fatal(err)
		}
		r := httptest.NewRequest(http.MethodGet, "/mcp", nil)
		r = r.WithContext(context.WithValue(r.Context(), http.LocalAddrContextKey, tcp))
		if got := loopbackConn(r); got != want {
			t.Errorf("loopbackConn(local %s) = %v, want %v", addr, got, want)
		}
	}
	if loopbackConn(httptest.NewRequest(http.MethodGet, "/mcp", nil)) {
		t.Errorf("loopbackConn without a local address = true, want false")
	}
}
