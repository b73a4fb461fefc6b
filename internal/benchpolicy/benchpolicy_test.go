package benchpolicy

import (
	"reflect"
	"testing"

	"github.com/vmcp/vmcp/config"
)

// TestYAMLLoadsAsRules: the rendered section is the same rules once vmcp
// loads it.
func TestYAMLLoadsAsRules(t *testing.T) {
	t.Parallel()
	rules := Rules("demo", "echo", "text")
	doc := "name: t\nbackends: [{name: demo, transport: stdio, command: x}]\n" + YAML(rules)
	cfg, err := config.Parse([]byte(doc), func(string) (string, bool) { return "", false })
	if err != nil {
		t.Fatal(err)
	}
	if cfg.Authorization.Default != config.EffectDeny || !reflect.DeepEqual(cfg.Authorization.Rules, rules) {
		t.Fatalf("loaded %+v\nwant %+v", cfg.Authorization, rules)
	}
}
