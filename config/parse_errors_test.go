package config

import "testing"

// TestParseErrors feeds bad YAML to Parse and asserts the key path that
// starts each reported problem.
func TestParseErrors(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name string
		yaml string
		want []string
	}{
		// Reading and strict decoding.
		{"empty", "", []string{"config is empty"}},
		{"only comments", "# nothing here\n", []string{"config is empty"}},
		{"null document", "~\n", []string{"config is empty"}},
		{"syntax", "server: [\n", []string{"yaml: "}},
		{"top level list", "- a\n", []string{"expected a mapping, got a list at line 1"}},
		{"unknown key", oneBackend + "\nrateLimting: {}\n",
			[]string{`unknown key "rateLimting" at line 4`}},
		{"unknown nested key", "server:\n  prot: 1\n" + oneBackend,
			[]string{`server: unknown key "prot" at line 2`}},
		{"unknown key in list item", "backends:\n  - {name: a, transport: stdio, comand: x}\n",
			[]string{`backends[0]: unknown key "comand" at line 2`}},
		{"unknown key in user map value", oneBackend +
			"outgoingAuth: {backends: {a: {type: header_injection, header: X}}}\n",
			[]string{`outgoingAuth.backends.a: unknown key "header" at line 3`}},
		{"duplicate key differing in case", "server: {port: 1, Port: 2}\n" + oneBackend,
			[]string{`server: duplicate key "Port" (also at line 1)`}},
		{"duplicate user map key", "backends:\n  - {name: a, transport: stdio, command: x, env: {A: 1, A: 2}}\n",
			[]string{`backends[0].env: duplicate key "A"`}},
		{"not an integer", "server: {port: abc}\n" + oneBackend,
			[]string{`server.port: expected an integer, got "abc" at line 1`}},
		{"quoted integer", "server: {port: \"9000\"}\n" + oneBackend,
			[]string{`server.port: expected an integer, got "9000"`}},
		{"not a boolean", oneBackend + "optimizer: {enabled: yes}\n",
			[]string{`optimizer.enabled: expected a boolean, got "yes"`}},
		{"list for mapping", "server: [a]\n" + oneBackend,
			[]string{"server: expected a mapping, got a list"}},
		{"mapping for string", "name: {a: b}\n" + oneBackend,
			[]string{"name: expected a single value, got a mapping"}},
		{"mapping for list", "backends: {name: a}\n",
			[]string{"backends: expected a list, got a mapping"}},
		{"bad duration", oneBackend + withOIDC +
			"rateLimiting:\n  tools:\n    - {name: t, perUser: {maxTokens: 1, refillPeriod: 1x}}\n",
			[]string{`rateLimiting.tools[0].perUser.refillPeriod: invalid duration "1x" at line 6`}},
		{"bad duration in map form", oneBackend + "rateLimiting: {checkTimeout: {duration: soon}}\n",
			[]string{`rateLimiting.checkTimeout: invalid duration "soon"`}},
		{"duration map with extra key", oneBackend + "rateLimiting: {checkTimeout: {duration: 1s, x: 1}}\n",
			[]string{"rateLimiting.checkTimeout: expected a duration like 1m or {duration: 1m}, got a mapping"}},
		{"duration without unit", oneBackend + "server: {shutdownTimeout: 5}\n",
			[]string{`server.shutdownTimeout: invalid duration "5"`}},
		{"workload and backend differ", oneBackend + "aggregation:\n  tools:\n    - {workload: a, backend: b}\n",
			[]string{`aggregation.tools[0]: workload "a" and backend "b" differ at line 5`}},
		{"structural problems together", "server: {port: x, prot: 1}\nbogus: 1\n" + oneBackend,
			[]string{"server.port: expected an integer", `server: unknown key "prot"`, `unknown key "bogus"`}},

		// server
		{"port too large", "server: {port: 70000}\n" + oneBackend,
			[]string{"server.port: must be between 0 and 65535, got 70000"}},
		{"negative port", "server: {port: -1}\n" + oneBackend, []string{"server.port: must be between"}},
		{"path without slash", "server: {path: mcp}\n" + oneBackend, []string{`server.path: must start with "/"`}},
		{"negative body limit", "server: {maxBodyBytes: -1}\n" + oneBackend,
			[]string{"server.maxBodyBytes: must be positive"}},
		{"negative backend sessions", "server: {maxBackendSessions: -1}\n" + oneBackend,
			[]string{"server.maxBackendSessions: must be positive, got -1"}},
		{"negative shutdown timeout", "server: {shutdownTimeout: -1s}\n" + oneBackend,
			[]string{"server.shutdownTimeout: must not be negative"}},
		{"negative drain grace", "server: {drainGrace: -1s}\n" + oneBackend,
			[]string{"server.drainGrace: must not be negative, got -1s"}},

		// backends
		{"no backends", "name: x\n", []string{"backends: at least one backend is required"}},
		{"empty backend list", "backends: []\n", []string{"backends: at least one backend is required"}},
		{"backend name missing", "backends:\n  - {transport: stdio, command: x}\n",
			[]string{"backends[0].name: required"}},
		{"backend name shape", "backends:\n  - {name: -x, transport: stdio, command: x}\n",
			[]string{`backends[0].name: "-x" must match`}},
		{"backend name with space", "backends:\n  - {name: a b, transport: stdio, command: x}\n",
			[]string{`backends[0].name: "a b" must match`}},
		{"duplicate backend name", oneBackend + "  - {name: a, transport: stdio, command: x}\n",
			[]string{`backends[1].name: "a" is also the name of backends[0]`}},
		{"transport missing", "backends:\n  - {name: a, url: http://127.0.0.1/mcp}\n",
			[]string{"backends[0].transport: required"}},
		{"transport unknown", "backends:\n  - {name: a, transport: websocket, url: http://127.0.0.1/mcp}\n",
			[]string{`backends[0].transport: must be streamable-http, sse or stdio, got "websocket"`}},
		{"url required for sse", oneBackend + "  - {name: jira, transport: sse}\n",
			[]string{"backends[1].url: required for transport sse"}},
		{"url missing scheme", "backends:\n  - {name: a, transport: sse, url: \"127.0.0.1:8082/sse\"}\n",
			[]string{"backends[0].url: missing scheme"}},
		{"url scheme", "backends:\n  - {name: a, transport: sse, url: \"ftp://host/sse\"}\n",
			[]string{`backends[0].url: unsupported scheme "ftp"`}},
		{"url host", "backends:\n  - {name: a, transport: sse, url: \"http:///sse\"}\n",
			[]string{"backends[0].url: missing host"}},
		{"stdio without command", "backends:\n  - {name: a, transport: stdio}\n",
			[]string{"backends[0].command: required for transport stdio"}},
		{"stdio with url", "backends:\n  - {name: a, transport: stdio, command: x, url: http://127.0.0.1/}\n",
			[]string{"backends[0].url: not allowed for transport stdio"}},
		{"http with process fields", "backends:\n  - {name: a, transport: streamable-http, url: http://127.0.0.1/mcp," +
			" command: x, args: [y], env: {A: b}, cwd: /tmp}\n",
			[]string{
				"backends[0].command: not allowed for transport streamable-http",
				"backends[0].args: not allowed",
				"backends[0].env: not allowed",
				"backends[0].cwd: not allowed",
			}},
		{"negative backend timeout", "backends:\n  - {name: a, transport: stdio, command: x, requestTimeout: -1s}\n",
			[]string{"backends[0].requestTimeout: must not be negative"}},

		// incomingAuth
		{"auth type unknown", oneBackend + "incomingAuth: {type: basic}\n",
			[]string{`incomingAuth.type: must be anonymous or oidc, got "basic"`}},
		{"oidc section missing", oneBackend + "incomingAuth: {type: oidc}\n",
			[]string{"incomingAuth.oidc: required for type oidc"}},
		{"oidc fields missing", oneBackend + "incomingAuth: {type: oidc, oidc: {clockSkew: 1s}}\n",
			[]string{"incomingAuth.oidc.issuer: required", "incomingAuth.oidc.audience: required"}},
		{"oidc empty section", oneBackend + "incomingAuth: {type: oidc, oidc: {}}\n",
			[]string{"incomingAuth.oidc.issuer: required", "incomingAuth.oidc.audience: required"}},
		{"oidc issuer over http", oneBackend + "incomingAuth: {type: oidc, oidc: {issuer: http://idp.example.com, audience: x}}\n",
			[]string{"incomingAuth.oidc.issuer: must use https"}},
		{"oidc issuer without scheme", oneBackend + "incomingAuth: {type: oidc, oidc: {issuer: idp.example.com, audience: x}}\n",
			[]string{"incomingAuth.oidc.issuer: missing scheme"}},
		{"oidc jwks over http", oneBackend + "incomingAuth: {type: oidc, oidc: {issuer: https://idp, audience: x, jwksUrl: http://idp/keys}}\n",
			[]string{"incomingAuth.oidc.jwksUrl: must use https"}},
		{"oidc weak algorithms", oneBackend +
			"incomingAuth: {type: oidc, oidc: {issuer: https://idp, audience: x, allowedAlgorithms: [RS256, none, HS256, hs512]}}\n",
			[]string{
				`incomingAuth.oidc.allowedAlgorithms[1]: "none" not allowed`,
				`incomingAuth.oidc.allowedAlgorithms[2]: "HS256" not allowed`,
				`incomingAuth.oidc.allowedAlgorithms[3]: "hs512" not allowed`,
			}},
		{"anonymous on the network", "server: {host: 0.0.0.0}\n" + oneBackend,
			[]string{`incomingAuth.type: anonymous on non-loopback server.host "0.0.0.0" needs allowAnonymousNetwork: true`}},
		{"oidc section with anonymous", oneBackend + "incomingAuth: {oidc: {issuer: https://idp, audience: x}}\n",
			[]string{"incomingAuth.oidc: given but type is anonymous"}},

		// outgoingAuth
		{"outgoing auth for unknown backend", oneBackend +
			"outgoingAuth: {backends: {nope: {type: header_injection, headerName: X, headerValueEnv: Y}}}\n",
			[]string{`outgoingAuth.backends.nope: no backend named "nope"`}},
		{"outgoing auth unknown type", oneBackend + "outgoingAuth: {backends: {a: {type: oauth}}}\n",
			[]string{`outgoingAuth.backends.a.type: must be header_injection, client_credentials, token_exchange or passthrough, got "oauth"`}},
		{"outgoing auth empty entry", oneBackend + "outgoingAuth: {backends: {a: {}}}\n",
			[]string{"outgoingAuth.backends.a.type: required (header_injection, client_credentials, token_exchange or passthrough)"}},
		{"header injection fields", oneBackend + "outgoingAuth: {backends: {a: {type: header_injection, tokenURL: https://idp/token}}}\n",
			[]string{
				"outgoingAuth.backends.a.headerName: required",
				"outgoingAuth.backends.a.headerValueEnv: required",
				"outgoingAuth.backends.a.tokenURL: not used by header_injection",
			}},
		{"token exchange fields", oneBackend + "outgoingAuth: {backends: {a: {type: token_exchange, tokenURL: http://idp.example.com/token, scopes: [\"a b\"], headerName: X}}}\n",
			[]string{
				"outgoingAuth.backends.a.headerName: not used by token_exchange",
				`outgoingAuth.backends.a.tokenURL: must use https (http is allowed only for loopback hosts), got "http://idp.example.com/token"`,
				"outgoingAuth.backends.a.clientID: required",
				"outgoingAuth.backends.a.clientSecretEnv: required (or privateKeyFile)",
				`outgoingAuth.backends.a.scopes[0]: must be one non-empty scope token, got "a b"`,
				"outgoingAuth.backends.a.audience: token_exchange needs audience or resource (what the exchanged token is for)",
			}},
		{"token exchange client auth", oneBackend + "outgoingAuth: {backends: {a: {type: token_exchange, tokenURL: https://idp/token, clientID: vmcp, clientSecretEnv: S, privateKeyFile: /k.pem, clientAuthMethod: client_secret_jwt, resource: https://a}}}\n",
			[]string{
				"outgoingAuth.backends.a.privateKeyFile: give clientSecretEnv or privateKeyFile, not both",
				`outgoingAuth.backends.a.clientAuthMethod: must be client_secret_basic, client_secret_post or private_key_jwt, got "client_secret_jwt"`,
			}},
		{"private key jwt without key", oneBackend + "outgoingAuth: {backends: {a: {type: client_credentials, tokenURL: https://idp/token, clientID: vmcp, clientSecretEnv: S, clientAuthMethod: private_key_jwt, privateKeyID: k1}}}\n",
			[]string{
				"outgoingAuth.backends.a.clientAuthMethod: private_key_jwt needs privateKeyFile",
				"outgoingAuth.backends.a.privateKeyID: needs privateKeyFile",
			}},
		{"per-user fields on a service type", oneBackend + "outgoingAuth: {backends: {a: {type: client_credentials, tokenURL: https://idp/token, clientID: vmcp, clientSecretEnv: S, subjectTokenType: x, actorToken: true, discovery: none}}}\n",
			[]string{
				"outgoingAuth.backends.a.discovery: only for per-user types (token_exchange, passthrough): client_credentials already uses its own credential there",
				"outgoingAuth.backends.a.subjectTokenType: not used by client_credentials",
				"outgoingAuth.backends.a.actorToken: only for token_exchange",
			}},
		{"passthrough with discovery", oneBackend + "outgoingAuth: {backends: {a: {type: passthrough, discovery: client_credentials, audience: x}}}\n",
			[]string{
				"outgoingAuth.backends.a.tokenURL: required",
				"outgoingAuth.backends.a.clientID: required",
				"outgoingAuth.backends.a.clientSecretEnv: required (or privateKeyFile)",
			}},
		{"passthrough stray keys", oneBackend + "outgoingAuth: {backends: {a: {type: passthrough, discovery: token, clientID: x}}}\n",
			[]string{
				`outgoingAuth.backends.a.discovery: must be none, client_credentials or header_injection, got "token"`,
				"outgoingAuth.backends.a.clientID: not used by passthrough",
			}},
		{"per-user auth on stdio", "backends: [{name: a, transport: stdio, command: x}]\noutgoingAuth: {backends: {a: {type: passthrough}}}\n",
			[]string{"outgoingAuth.backends.a.type: passthrough needs an HTTP backend (streamable-http or sse), not stdio"}},

		// optimizer
		{"hybrid weight out of range", oneBackend + "optimizer: {enabled: true, hybridWeight: 1.5}\n",
			[]string{"optimizer.hybridWeight: must be between 0 and 1, got 1.5"}},
		{"hybrid weight not a number", oneBackend + "optimizer: {hybridWeight: half}\n",
			[]string{`optimizer.hybridWeight: expected a number, got "half" at line 3`}},
		{"embeddings without url and model", oneBackend + "optimizer: {embeddings: {batchSize: 0}}\n",
			[]string{
				"optimizer.embeddings.url: required (the API's base URL, e.g. http://127.0.0.1:11434/v1)",
				"optimizer.embeddings.model: required",
			}},
		{"embeddings fields", oneBackend + "optimizer: {embeddings: {url: http://emb.example.com/v1, model: m, apiKeyEnv: K, dimensions: -1, batchSize: 5000, timeout: -1s}}\n",
			[]string{
				`optimizer.embeddings.url: must use https (http is allowed only for loopback hosts), got "http://emb.example.com/v1"`,
				"optimizer.embeddings.dimensions: must be between 0 (the model's) and 16384, got -1",
				"optimizer.embeddings.batchSize: must be between 1 and 2048, got 5000",
				"optimizer.embeddings.timeout: must be positive and at most 10s (a query's deadline), got -1s",
			}},
		{"embeddings url scheme", oneBackend + "optimizer: {embeddings: {url: ftp://x/v1, model: m}}\n",
			[]string{`optimizer.embeddings.url: unsupported scheme "ftp" (want http or https)`}},

		// aggregation
		{"conflict resolution unknown", oneBackend + "aggregation: {conflictResolution: merge}\n",
			[]string{`aggregation.conflictResolution: must be prefix, priority or manual, got "merge"`}},
		{"prefix format without backend", oneBackend + "aggregation: {conflictResolutionConfig: {prefixFormat: x_}}\n",
			[]string{`aggregation.conflictResolutionConfig.prefixFormat: must contain "{backend}"`}},
		{"priority order", oneBackend + "aggregation: {conflictResolutionConfig: {priorityOrder: [a, b, a]}}\n",
			[]string{
				`aggregation.conflictResolutionConfig.priorityOrder[1]: no backend named "b"`,
				`aggregation.conflictResolutionConfig.priorityOrder[2]: "a" is also listed at priorityOrder[0]`,
			}},
		{"tools backend missing", oneBackend + "aggregation: {tools: [{filter: [x]}]}\n",
			[]string{"aggregation.tools[0].backend: required"}},
		{"tools backend unknown", oneBackend + "aggregation: {tools: [{backend: b}]}\n",
			[]string{`aggregation.tools[0].backend: no backend named "b"`}},
		{"tools workload unknown", oneBackend + "aggregation: {tools: [{workload: b}]}\n",
			[]string{`aggregation.tools[0].backend: no backend named "b"`}},
		{"tools backend twice", oneBackend + "aggregation: {tools: [{backend: a}, {workload: a}]}\n",
			[]string{`aggregation.tools[1].backend: "a" is also listed at tools[0]`}},
		{"empty filter entry", oneBackend + "aggregation: {tools: [{backend: a, filter: [x, \"\"]}]}\n",
			[]string{"aggregation.tools[0].filter[1]: must not be empty"}},
		{"override sets nothing", oneBackend + "aggregation: {tools: [{backend: a, overrides: {x: {}}}]}\n",
			[]string{"aggregation.tools[0].overrides.x: must set name or description"}},
		{"override empty key", oneBackend + "aggregation: {tools: [{backend: a, overrides: {\"\": {name: y}}}]}\n",
			[]string{`aggregation.tools[0].overrides[""]: tool name must not be empty`}},
		{"overrides collide", oneBackend + "aggregation: {tools: [{backend: a, overrides: {p: {name: n}, q: {name: n}}}]}\n",
			[]string{`aggregation.tools[0].overrides.q.name: "n" is also the new name of "p"`}},

		// rateLimiting
		{"bucket bounds", oneBackend + "rateLimiting: {shared: {maxTokens: 0, refillPeriod: 0s}}\n",
			[]string{
				"rateLimiting.shared.maxTokens: must be at least 1, got 0",
				"rateLimiting.shared.refillPeriod: must be positive",
			}},
		{"bucket rate too fine to count exactly", oneBackend + "rateLimiting: {shared: {maxTokens: 1000000, refillPeriod: 24h}}\n",
			[]string{"rateLimiting.shared.maxTokens: 1000000 tokens per 24h0m0s is too fine a rate"}},
		{"bucket empty", oneBackend + "rateLimiting: {shared: {}}\n",
			[]string{"rateLimiting.shared.maxTokens: must be at least 1", "rateLimiting.shared.refillPeriod: must be positive"}},
		{"per-user with anonymous", oneBackend + "rateLimiting: {perUser: {maxTokens: 1, refillPeriod: 1s}}\n",
			[]string{"rateLimiting.perUser: needs incomingAuth.type oidc"}},
		{"tool per-user with anonymous", oneBackend +
			"rateLimiting: {tools: [{name: t, perUser: {maxTokens: 1, refillPeriod: 1s}}]}\n",
			[]string{"rateLimiting.tools[0].perUser: needs incomingAuth.type oidc"}},
		{"tool limits", oneBackend + withOIDC + "rateLimiting:\n  tools:\n" +
			"    - {shared: {maxTokens: 1, refillPeriod: 1s}}\n" +
			"    - {name: t, shared: {maxTokens: 1, refillPeriod: 1s}}\n" +
			"    - {name: t, perUser: {maxTokens: 0, refillPeriod: 1s}}\n" +
			"    - {name: u}\n",
			[]string{
				"rateLimiting.tools[0].name: required",
				`rateLimiting.tools[2].name: "t" is also listed at tools[1]`,
				"rateLimiting.tools[2].perUser.maxTokens: must be at least 1",
				"rateLimiting.tools[3]: needs shared or perUser",
			}},
		{"check timeout", oneBackend + "rateLimiting: {checkTimeout: -5ms}\n",
			[]string{"rateLimiting.checkTimeout: must be positive"}},
		{"store failure policy", oneBackend + "rateLimiting: {onStoreFailure: open}\n",
			[]string{`rateLimiting.onStoreFailure: must be local, allow or deny, got "open"`}},

		// redis and sessionStorage
		{"redis without address", oneBackend + "redis: {db: 1}\n", []string{"redis.address: required"}},
		{"redis empty section", oneBackend + "redis: {}\n", []string{"redis.address: required"}},
		{"redis address shape", oneBackend + "redis: {address: localhost}\n",
			[]string{`redis.address: must be host:port, got "localhost"`}},
		{"redis port", oneBackend + "redis: {address: \"localhost:x\"}\n", []string{"redis.address: invalid port"}},
		{"redis relative socket", oneBackend + "redis: {address: \"unix://redis.sock\"}\n",
			[]string{`redis.address: a unix socket address must be unix:// and an absolute path, got "unix://redis.sock"`}},
		{"redis db", oneBackend + "redis: {address: \"localhost:6379\", db: -1}\n", []string{"redis.db: must not be negative"}},
		{"session storage provider", oneBackend + "sessionStorage: {provider: memory}\n",
			[]string{`sessionStorage.provider: must be redis, got "memory"`}},
		{"session storage address", oneBackend + "sessionStorage: {provider: redis}\n",
			[]string{"sessionStorage.address: required"}},

		// optimizer and audit
		{"optimizer too many", oneBackend + "optimizer: {maxToolsToReturn: 101}\n",
			[]string{"optimizer.maxToolsToReturn: must be between 1 and 100, got 101"}},
		{"optimizer negative", oneBackend + "optimizer: {maxToolsToReturn: -1}\n",
			[]string{"optimizer.maxToolsToReturn: must be between 1 and 100"}},
		{"audit argument bytes", oneBackend + "audit: {maxArgumentBytes: -1}\n",
			[]string{"audit.maxArgumentBytes: must not be negative"}},

		// health
		{"health negatives", oneBackend + "health: {interval: -1s, timeout: -1s, degradedAfter: -1, unhealthyAfter: -2, breaker: {failureThreshold: -1, openFor: -1s}}\n",
			[]string{
				"health.interval: must not be negative, got -1s",
				"health.timeout: must not be negative, got -1s",
				"health.degradedAfter: must not be negative, got -1",
				"health.unhealthyAfter: must not be negative, got -2",
				"health.breaker.failureThreshold: must not be negative, got -1",
				"health.breaker.openFor: must not be negative, got -1s",
			}},
		{"health timeout over interval", oneBackend + "health: {interval: 1s, timeout: 2s}\n",
			[]string{"health.timeout: must not exceed health.interval (1s), got 2s"}},
		{"health thresholds out of order", oneBackend + "health: {degradedAfter: 4, unhealthyAfter: 2}\n",
			[]string{"health.unhealthyAfter: must be at least degradedAfter (4), got 2"}},
		{"health unknown key", oneBackend + "health: {breaker: {threshold: 3}}\n",
			[]string{`health.breaker: unknown key "threshold" at line 3`}},
		{"health bad duration", oneBackend + "health: {interval: often}\n",
			[]string{`health.interval: invalid duration "often"`}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			cfg, err := Parse([]byte(tt.yaml), nil)
			if cfg != nil {
				t.Errorf("got a config with the error")
			}
			checkProblems(t, err, tt.want)
		})
	}
}
