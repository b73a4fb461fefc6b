package server

import (
	"errors"
	"fmt"
	"os"

	"github.com/vmcp/vmcp/audit"
	"github.com/vmcp/vmcp/config"
	"github.com/vmcp/vmcp/ratelimit"
)

// preflight makes, in New, the checks of what Start builds that need no
// network, so New (and `vmcp validate`, which runs it) refuses the configs
// Start would: an unset redis.passwordEnv, an audit file that cannot be
// opened (see audit.CheckOutput: nothing is written or left behind), and
// a rate limiter that cannot be built (built here on a memory store and
// dropped). Each error names its key path and wraps config.ErrInvalid.
func (s *Server) preflight() error {
	var errs []error
	if _, err := redisPassword(s.cfg.Redis, s.opts.Getenv); err != nil {
		errs = append(errs, err)
	}
	if s.cfg.Audit.Enabled {
		errs = append(errs, config.Invalid("audit.output", audit.CheckOutput(s.cfg.Audit)))
	}
	_, err := ratelimit.New(s.cfg.RateLimiting, ratelimit.Options{
		ServerName: s.cfg.Name,
		Store:      ratelimit.NewMemoryStore(ratelimit.MemoryOptions{}),
	})
	errs = append(errs, config.Invalid("rateLimiting", err))
	return errors.Join(errs...)
}

// redisPassword resolves r.PasswordEnv with getenv (nil: os.LookupEnv).
// "" and no error when r is nil or names no variable; a named variable
// that is not set is an error at redis.passwordEnv.
func redisPassword(r *config.Redis, getenv func(string) (string, bool)) (string, error) {
	if r == nil || r.PasswordEnv == "" {
		return "", nil
	}
	if getenv == nil {
		getenv = os.LookupEnv
	}
	pw, ok := getenv(r.PasswordEnv)
	if !ok {
		return "", config.Invalid("redis.passwordEnv", fmt.Errorf("environment variable %s is not set", r.PasswordEnv))
	}
	return pw, nil
}
