package outauth_test

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"log/slog"
	"strings"
	"testing"

	"github.com/vmcp/vmcp/auth"
	"github.com/vmcp/vmcp/config"
	"github.com/vmcp/vmcp/outauth"
)

// TestTokenRedacted checks that a bearer token, and an identity or caller
// holding one, print, log and encode as [redacted].
func TestTokenRedacted(t *testing.T) {
	t.Parallel()
	const secret = "eyJhbGciOi.SECRET-bearer.sig"
	tok := auth.Token(secret)
	id := auth.Identity{Issuer: testIssuer, Subject: "alice", Claims: map[string]any{"sub": "alice"}, Token: tok}
	caller := outauth.Caller{Issuer: testIssuer, Subject: "alice", Token: tok}

	texts := map[string]string{}
	for _, verb := range []string{"%v", "%s", "%q", "%#v", "%+v", "%x", "%X", "%10s", "%-20v"} {
		texts["Token "+verb] = fmt.Sprintf(verb, tok)
		texts["Identity "+verb] = fmt.Sprintf(verb, id)
		texts["*Identity "+verb] = fmt.Sprintf(verb, &id)
		texts["Caller "+verb] = fmt.Sprintf(verb, caller)
	}
	texts["Sprint"] = fmt.Sprint(tok, id)
	texts["Println"] = fmt.Sprintln(tok, id)

	var jsonLog, textLog bytes.Buffer
	for _, l := range []*slog.Logger{slog.New(slog.NewJSONHandler(&jsonLog, nil)), slog.New(slog.NewTextHandler(&textLog, nil))} {
		l.Info("request", "token", tok, "identity", id, "caller", caller, slog.Any("any", tok), slog.Group("g", "t", tok))
	}
	texts["slog JSON"] = jsonLog.String()
	texts["slog text"] = textLog.String()

	type holder struct {
		ID     auth.Identity
		Ptr    *auth.Identity
		Caller outauth.Caller
		Tokens map[string]auth.Token
	}
	b, err := json.Marshal(holder{ID: id, Ptr: &id, Caller: caller, Tokens: map[string]auth.Token{"t": tok}})
	if err != nil {
		t.Fatal(err)
	}
	texts["encoding/json"] = string(b)

	for what, s := range texts {
		noSecrets(t, what, s, secret, "SECRET")
	}
	for _, what := range []string{"Token %v", "Token %s", "Token %#v", "Identity %v", "slog JSON", "slog text", "encoding/json"} {
		if !strings.Contains(texts[what], "[redacted]") {
			t.Errorf("%s: %q does not say [redacted]", what, texts[what])
		}
	}
	if got := texts["Token %q"]; got != `"[redacted]"` {
		t.Errorf("Token %%q = %s", got)
	}
	if !strings.Contains(texts["slog JSON"], `"token":"[redacted]"`) {
		t.Errorf("slog JSON: %s", texts["slog JSON"])
	}
	var back holder
	if err := json.Unmarshal(b, &back); err != nil || string(back.ID.Token) != "[redacted]" {
		t.Errorf("the encoded identity's token decodes as %q (%v)", back.ID.Token, err)
	}
	// It is still the token where it is meant to be.
	if string(tok) != secret {
		t.Errorf("string(tok) = %q", string(tok))
	}
}

// TestTokenRedactedBadVerbs checks that a token printed with a verb that
// does not apply to strings (a mistake go vet reports only for constant
// formats) shows no secret either. (Not %p: fmt prints a bad %p itself,
// never asking the type, so no method can hide the value; go vet reports
// %p of a string.)
func TestTokenRedactedBadVerbs(t *testing.T) {
	t.Parallel()
	const secret = "SECRET-bearer"
	tok := auth.Token(secret)
	id := auth.Identity{Subject: "alice", Token: tok}
	for _, verb := range []string{"%d", "%t", "%b", "%o", "%c", "%e", "%f", "%g", "%U"} {
		noSecrets(t, "Token "+verb, fmt.Sprintf(verb, tok), secret)
		noSecrets(t, "Identity "+verb, fmt.Sprintf(verb, id), secret)
	}
}

// TestPassthrough checks that passthrough sends the caller's own token as
// it came, and fails for an anonymous caller.
func TestPassthrough(t *testing.T) {
	t.Parallel()
	b := mustNew(t, config.BackendAuth{Type: config.AuthPassthrough}, outauth.Options{})
	tests := []struct {
		name    string
		ctx     context.Context
		want    string
		wantErr bool
	}{
		{name: "caller with a token", ctx: auth.WithIdentity(context.Background(),
			auth.Identity{Issuer: testIssuer, Subject: "alice", Token: auth.Token(callerToken("alice"))}),
			want: "Bearer " + callerToken("alice")},
		{name: "token with spaces and symbols", ctx: auth.WithIdentity(context.Background(),
			auth.Identity{Issuer: testIssuer, Subject: "bob", Token: "a.b-c_d~e+f/g="}),
			want: "Bearer a.b-c_d~e+f/g="},
		{name: "anonymous identity", ctx: auth.WithIdentity(context.Background(),
			auth.Identity{Issuer: auth.AnonymousIssuer, Subject: auth.AnonymousSubject}), wantErr: true},
		{name: "no identity", ctx: context.Background(), wantErr: true},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			name, value, err := b.Calls.Header(tc.ctx, outauth.CallerFrom(tc.ctx))
			if tc.wantErr {
				if err == nil {
					t.Fatalf("Header = %q: %q, want an error", name, value)
				}
				if oe := asError(t, err); oe.Backend != backendName || oe.Unavailable || !strings.Contains(err.Error(), backendName) {
					t.Errorf("error %+v", *oe)
				}
				return
			}
			if err != nil || name != "Authorization" || value != tc.want {
				t.Errorf("Header = %q: %q, %v; want Authorization: %q", name, value, err, tc.want)
			}
		})
	}
}

// TestCallerFrom checks the caller read from a request's identity.
func TestCallerFrom(t *testing.T) {
	t.Parallel()
	id := auth.Identity{Issuer: testIssuer, Subject: "alice", Token: "tok"}
	if got := outauth.CallerFrom(auth.WithIdentity(context.Background(), id)); got != (outauth.Caller{Issuer: testIssuer, Subject: "alice", Token: "tok"}) {
		t.Errorf("CallerFrom = %+v", got)
	}
	if got := outauth.CallerFrom(context.Background()); got != (outauth.Caller{}) {
		t.Errorf("CallerFrom without an identity = %+v", got)
	}
}
