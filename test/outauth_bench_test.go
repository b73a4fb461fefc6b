package test

import (
	"context"
	"testing"

	"github.com/vmcp/vmcp/auth"
	"github.com/vmcp/vmcp/config"
	"github.com/vmcp/vmcp/outauth"
)

// BenchmarkTokenExchange measures what a user's first call to a
// token_exchange backend pays for its credential: one RFC 8693 round trip
// to the real identity provider (test/js/idp.mjs, on loopback), beside the
// cached credential every later call uses.
//
//	cd test && go test -run '^$' -bench BenchmarkTokenExchange -benchtime 300x .
func BenchmarkTokenExchange(b *testing.B) {
	needIdP(b)
	p := startIdP(b, idpOpts{exchangeAudiences: "jira"})
	tok := fetchToken(b, p.TokenEndpoint, tokenReq{client: "vmcp-eng", resource: "http://127.0.0.1:4483/mcp"})
	cfg := config.BackendAuth{Type: config.AuthTokenExchange, TokenURL: p.TokenEndpoint, ClientID: "vmcp-gateway",
		ClientSecretEnv: "VMCP_TE_SECRET", Audience: "jira"}
	opts := outauth.Options{Getenv: func(string) (string, bool) { return "vmcp-gateway-secret", true }}
	caller := outauth.Caller{Issuer: p.Issuer, Subject: "vmcp-eng", Token: auth.Token(tok)}
	ctx := context.Background()
	credential := func(b *testing.B) outauth.Credential {
		ob, err := outauth.New("jira", cfg, opts)
		if err != nil {
			b.Fatal(err)
		}
		return ob.Calls
	}
	b.Run("first_call", func(b *testing.B) {
		for b.Loop() {
			// A fresh cache: every call exchanges.
			if _, _, err := credential(b).Header(ctx, caller); err != nil {
				b.Fatal(err)
			}
		}
	})
	b.Run("cached", func(b *testing.B) {
		c := credential(b)
		if _, _, err := c.Header(ctx, caller); err != nil {
			b.Fatal(err)
		}
		b.ReportAllocs()
		for b.Loop() {
			if _, _, err := c.Header(ctx, caller); err != nil {
				b.Fatal(err)
			}
		}
	})
}
