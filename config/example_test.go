package config_test

import (
	"errors"
	"fmt"

	"github.com/vmcp/vmcp/config"
)

func ExampleParse() {
	cfg, err := config.Parse([]byte(`
backends:
  - {name: github, transport: streamable-http, url: http://127.0.0.1:8081/mcp}
`), func(key string) (string, bool) {
		if key == "VMCP_SERVER_PORT" {
			return "9000", true
		}
		return "", false
	})
	if err != nil {
		fmt.Println(err)
		return
	}
	fmt.Println(cfg.Server.Host, cfg.Server.Port, cfg.Server.Path, cfg.Backends[0].ConnectTimeout)
	// Output: 127.0.0.1 9000 /mcp 10s
}

func ExampleParse_errors() {
	_, err := config.Parse([]byte(`
backends:
  - {name: github, transport: streamable-http, url: http://127.0.0.1:8081/mcp}
  - {name: jira, transport: sse}
rateLimting: {}
`), nil)
	fmt.Println(err)
	fmt.Println(errors.Is(err, config.ErrInvalid))

	_, err = config.Parse([]byte(`
backends:
  - {name: github, transport: streamable-http, url: 127.0.0.1:8081/mcp}
  - {name: jira, transport: sse}
`), nil)
	fmt.Println(err)
	// Output:
	// unknown key "rateLimting" at line 5
	// true
	// backends[0].url: missing scheme in "127.0.0.1:8081/mcp" (want http:// or https://)
	// backends[1].url: required for transport sse
}
