package server

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/vmcp/vmcp/config"
)

// TestNewRefusesWhatStartWould: New (and so `vmcp validate`) refuses the
// configs Start used to be the first to refuse, naming the key path, and
// wraps config.ErrInvalid; it leaves no audit file behind.
func TestNewRefusesWhatStartWould(t *testing.T) {
	t.Parallel()
	env := func(k string) (string, bool) {
		if k == "VMCP_TEST_REDIS_PW" {
			return "secret", true
		}
		return "", false
	}
	tests := []struct {
		name    string
		edit    func(c *config.Config, dir string)
		wantErr []string // substrings of the error; none: New succeeds
	}{
		{
			name: "redis.passwordEnv set",
			edit: func(c *config.Config, _ string) {
				c.Redis = &config.Redis{Address: "127.0.0.1:1", PasswordEnv: "VMCP_TEST_REDIS_PW"}
			},
		},
		{
			name: "redis.passwordEnv unset",
			edit: func(c *config.Config, _ string) {
				c.Redis = &config.Redis{Address: "127.0.0.1:1", PasswordEnv: "VMCP_TEST_REDIS_UNSET"}
				c.RateLimiting.Shared = &config.Bucket{MaxTokens: 1, RefillPeriod: config.Duration(60e9)}
			},
			wantErr: []string{"redis.passwordEnv: ", "VMCP_TEST_REDIS_UNSET", "not set"},
		},
		{
			name: "audit file in a missing directory",
			edit: func(c *config.Config, dir string) {
				c.Audit = config.Audit{Enabled: true, Output: filepath.Join(dir, "missing", "audit.log")}
			},
			wantErr: []string{"audit.output: ", "no such file or directory"},
		},
		{
			name: "audit output is a directory",
			edit: func(c *config.Config, dir string) {
				c.Audit = config.Audit{Enabled: true, Output: dir}
			},
			wantErr: []string{"audit.output: ", "is a directory"},
		},
		{
			name: "audit file that cannot be opened is fine when audit is off",
			edit: func(c *config.Config, dir string) {
				c.Audit = config.Audit{Enabled: false, Output: dir}
			},
		},
		{
			name: "audit file that does not exist yet",
			edit: func(c *config.Config, dir string) {
				c.Audit = config.Audit{Enabled: true, Output: filepath.Join(dir, "audit.log")}
			},
		},
		{
			name: "two mistakes, two errors",
			edit: func(c *config.Config, dir string) {
				c.Redis = &config.Redis{Address: "127.0.0.1:1", PasswordEnv: "VMCP_TEST_REDIS_UNSET"}
				c.Audit = config.Audit{Enabled: true, Output: dir}
			},
			wantErr: []string{"redis.passwordEnv: ", "\naudit.output: "},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			dir := t.TempDir()
			cfg := testConfig(t, config.Backend{Name: "a", Transport: config.TransportStdio, Command: "/bin/true"})
			tt.edit(&cfg, dir)

			srv, err := New(cfg, Options{Logger: quietLogger(), Getenv: env})

			if srv != nil {
				if err := srv.Shutdown(context.Background()); err != nil {
					t.Errorf("Shutdown: %v", err)
				}
			}
			if len(tt.wantErr) == 0 {
				if err != nil {
					t.Fatalf("New = %v, want no error", err)
				}
			} else {
				if err == nil {
					t.Fatalf("New = nil, want an error containing %q", tt.wantErr)
				}
				if !errors.Is(err, config.ErrInvalid) {
					t.Errorf("error %q does not wrap config.ErrInvalid", err)
				}
				for _, w := range tt.wantErr {
					if !strings.Contains(err.Error(), w) {
						t.Errorf("error %q does not contain %q", err, w)
					}
				}
			}
			if left, _ := os.ReadDir(dir); len(left) != 0 {
				t.Errorf("New left %d file(s) behind in the audit directory: %v", len(left), left[0].Name())
			}
		})
	}
}
