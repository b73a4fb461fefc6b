package backends

import (
	"errors"
	"fmt"
	"os"

	"github.com/vmcp/vmcp/config"
)

// outgoingHeaders resolves a backend's outgoing auth into the headers sent
// on every request to it. Nothing from the MCP client's own request is ever
// added: these headers are the only credentials a backend sees.
func outgoingHeaders(a config.BackendAuth, getenv func(string) (string, bool)) (map[string]string, error) {
	if getenv == nil {
		getenv = os.LookupEnv
	}
	switch a.Type {
	case "":
		return nil, nil
	case config.AuthHeaderInjection:
		v, ok := getenv(a.HeaderValueEnv)
		if !ok || v == "" {
			return nil, fmt.Errorf("headerValueEnv: environment variable %s is not set", a.HeaderValueEnv)
		}
		if a.HeaderName == "" {
			return nil, errors.New("headerName is empty")
		}
		return map[string]string{a.HeaderName: v}, nil
	default:
		return nil, fmt.Errorf("unsupported type %q", a.Type)
	}
}
