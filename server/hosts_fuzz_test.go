package server

import (
	"fmt"
	"net/url"
	"strings"
	"testing"
)

// FuzzCheckHostOrigin checks the DNS-rebinding rule on arbitrary Host and
// Origin values and one allowedHosts and allowedOrigins entry each (""
// means none): a loopback Host without Origin is always allowed; "*" in
// both lists allows any Origin with any Host that has a name; adding "*"
// to either list never refuses what was allowed (such a Host); a refusal
// quotes the value it refuses; an allowed Host is allowed as the Origin
// http://<Host> too; and ASCII case does not change the verdict.
func FuzzCheckHostOrigin(f *testing.F) {
	for _, s := range []struct {
		entryHost, entryOrigin, host, origin string
		loopback, withOrigin                 bool
	}{
		{"", "", "localhost:4483", "", true, false},
		{"", "", "127.0.0.1:4483", "http://127.0.0.1:4483", true, true},
		{"", "", "[::1]:4483", "http://[::1]:4483", true, true},
		{"", "", "evil.example:4483", "", true, false},
		{"", "", "vmcp.example.com", "https://evil.example", false, true},
		{"vmcp.example.com", "", "VMCP.example.com:443", "https://vmcp.example.com", false, true},
		{"10.0.0.5:4483", "", "10.0.0.5:4484", "", false, false},
		{"[fe80::1]", "", "[fe80::1]:4483", "", false, false},
		{"*", "", "anything", "null", false, true},
		{"", "https://app.example.com/", "localhost", "https://APP.example.com", true, true},
		{"", "*", "localhost", "null", true, true},
		{"", "", "", "", false, false},
		{"", "", "localhost", "http://localhost:4483/", true, true},
		{"", "", "localhost", "file:///etc/passwd", true, true},
	} {
		f.Add(s.entryHost, s.entryOrigin, s.host, s.origin, s.loopback, s.withOrigin)
	}
	f.Fuzz(func(t *testing.T, entryHost, entryOrigin, host, origin string, loopback, withOrigin bool) {
		var hosts, origins, header []string
		if entryHost != "" {
			hosts = []string{entryHost}
		}
		if entryOrigin != "" {
			origins = []string{entryOrigin}
		}
		if withOrigin {
			header = []string{origin}
		}
		check := func(hosts, origins []string, host string, header []string) string {
			return checkHostOrigin(hosts, origins, loopback, host, header)
		}
		why := check(hosts, origins, host, header)

		if why != "" && !strings.Contains(why, fmt.Sprintf("%q", host)) && !strings.Contains(why, fmt.Sprintf("%q", origin)) {
			t.Fatalf("refusal %q quotes neither Host %q nor Origin %q", why, host, origin)
		}
		if isLoopback(host) && !withOrigin && why != "" {
			t.Fatalf("loopback Host %q refused: %s", host, why)
		}
		// A Host without a name (HTTP/1.0's empty one, ":4483") is refused
		// once allowedHosts is set, "*" included.
		name, _ := splitHostPort(host)
		if w := check([]string{"*"}, []string{"*"}, host, header); w != "" && name != "" {
			t.Fatalf("with \"*\" in both lists, Host %q Origin %q refused: %s", host, header, w)
		}
		if why == "" {
			if w := check(append(hosts, "*"), origins, host, header); w != "" && name != "" {
				t.Fatalf("adding \"*\" to allowedHosts refused Host %q Origin %q: %s", host, header, w)
			}
			if w := check(hosts, append(origins, "*"), host, header); w != "" {
				t.Fatalf("adding \"*\" to allowedOrigins refused Host %q Origin %q: %s", host, header, w)
			}
			if u, err := url.Parse("http://" + host); err == nil && u.Host == host && host != "" {
				if w := check(hosts, origins, host, []string{"http://" + host}); w != "" {
					t.Fatalf("Host %q allowed but Origin http://%s refused: %s", host, host, w)
				}
			}
		}
		upper := check(hosts, origins, asciiUpper(host), upperAll(header))
		if (upper == "") != (why == "") {
			t.Fatalf("ASCII case changes the verdict for Host %q Origin %q: %q vs %q", host, header, why, upper)
		}
	})
}

// asciiUpper upper-cases the ASCII letters of s and nothing else.
func asciiUpper(s string) string {
	return strings.Map(func(r rune) rune {
		if 'a' <= r && r <= 'z' {
			return r - 'a' + 'A'
		}
		return r
	}, s)
}

func upperAll(ss []string) []string {
	out := make([]string, len(ss))
	for i, s := range ss {
		out[i] = asciiUpper(s)
	}
	return out
}
