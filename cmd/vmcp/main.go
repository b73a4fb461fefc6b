// Command vmcp is the virtual MCP server: one Streamable HTTP endpoint in
// front of many backend MCP servers.
//
//	vmcp serve --config vmcp.yaml
//	vmcp validate --config vmcp.yaml
//	vmcp version
//
// A mistake in the command line (an unknown flag or subcommand, an extra
// argument, a bad --log-level) is printed with a hint to --help; a mistake
// in the config is printed with its key path. Both exit 1.
package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/signal"
	"strings"
	"syscall"
	"time"

	"github.com/spf13/cobra"

	"github.com/vmcp/vmcp/config"
	"github.com/vmcp/vmcp/server"
)

// version is set at build time with -ldflags "-X main.version=...".
var version = "dev"

func main() {
	os.Exit(run(os.Args[1:], os.Stdout, os.Stderr))
}

// run executes the command line args and returns the exit code. An error
// the command has not reported itself (cobra's: a bad flag, an unknown
// subcommand, an extra argument; or a bad flag value) is printed to stderr
// with a hint to the failing command's --help.
func run(args []string, stdout, stderr io.Writer) int {
	root := newRoot(stdout, stderr)
	root.SetArgs(args)
	cmd, err := root.ExecuteC()
	if err == nil {
		return 0
	}
	if !errors.As(err, new(reported)) {
		fmt.Fprintf(stderr, "Error: %v\nRun '%s --help' for usage.\n", err, cmd.CommandPath())
	}
	return 1
}

// reported marks an error the command has already written out (config
// errors with their key paths, start-up failures in the log), so run does
// not print it again.
type reported struct{ error }

func (r reported) Unwrap() error { return r.error }

func newRoot(stdout, stderr io.Writer) *cobra.Command {
	root := &cobra.Command{
		Use:     "vmcp",
		Short:   "A virtual MCP server aggregating many MCP servers behind one endpoint",
		Version: version,
		// run prints the errors nobody reported, with a one-line hint
		// instead of the whole usage.
		SilenceUsage:  true,
		SilenceErrors: true,
	}
	root.SetVersionTemplate("vmcp {{.Version}}\n")
	root.SetOut(stdout)
	root.SetErr(stderr)
	root.AddCommand(newServe(stderr), newValidate(stdout, stderr), newVersion(stdout))
	return root
}

func newVersion(stdout io.Writer) *cobra.Command {
	return &cobra.Command{
		Use:   "version",
		Short: "Print the build version",
		Args:  cobra.NoArgs,
		Run: func(*cobra.Command, []string) {
			fmt.Fprintf(stdout, "vmcp %s\n", version)
		},
	}
}

func newValidate(stdout, stderr io.Writer) *cobra.Command {
	var path string
	cmd := &cobra.Command{
		Use:   "validate",
		Short: "Check a config file and print every error with its key path",
		Args:  cobra.NoArgs,
		RunE: func(*cobra.Command, []string) error {
			cfg, err := config.Load(path)
			if err == nil {
				err = check(*cfg)
			}
			if err != nil {
				printErrors(stderr, path, err)
				return reported{err}
			}
			fmt.Fprintf(stdout, "%s: ok\n", path)
			return nil
		},
	}
	cmd.Flags().StringVarP(&path, "config", "c", "vmcp.yaml", "path to the config file")
	return cmd
}

func newServe(stderr io.Writer) *cobra.Command {
	var (
		path     string
		logLevel string
		logJSON  bool
	)
	cmd := &cobra.Command{
		Use:   "serve",
		Short: "Run the server until SIGINT or SIGTERM; SIGHUP reopens the audit file",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			log, err := newLogger(stderr, logLevel, logJSON)
			if err != nil {
				return err
			}
			cfg, err := config.Load(path)
			if err != nil {
				printErrors(stderr, path, err)
				return reported{err}
			}
			ctx, stop := signal.NotifyContext(cmd.Context(), os.Interrupt, syscall.SIGTERM)
			defer stop()
			hup := make(chan os.Signal, 1)
			signal.Notify(hup, syscall.SIGHUP)
			defer signal.Stop(hup)
			if err := serve(ctx, stop, hup, *cfg, log); err != nil {
				return reported{err} // logged
			}
			return nil
		},
	}
	cmd.Flags().StringVarP(&path, "config", "c", "vmcp.yaml", "path to the config file")
	cmd.Flags().StringVar(&logLevel, "log-level", "info", "debug, info, warn or error")
	cmd.Flags().BoolVar(&logJSON, "log-json", false, "log as JSON lines instead of text")
	return cmd
}

// check runs the checks serve makes before it connects anything:
// server.New builds the whole server (outgoing auth resolved from the
// environment, the stages this build supports) without connecting or
// listening, and Shutdown releases what it built.
func check(cfg config.Config) error {
	srv, err := server.New(cfg, server.Options{Logger: slog.New(slog.DiscardHandler), Version: version})
	if err != nil {
		return err
	}
	return srv.Shutdown(context.Background())
}

// serve runs the server until ctx ends, then shuts it down. stop ends the
// signal handling behind ctx (and, as signal.NotifyContext's stop does,
// cancels ctx); serve calls it as soon as it starts shutting
// down, so that a second SIGINT or SIGTERM during the shutdown (drain, stdio
// grace periods) kills the process the default way instead of being
// swallowed. A signal during start-up is not a failure: serve shuts down
// and returns nil. Each value from hup (SIGHUP) while serving reopens the
// audit file, for log rotation; nil hup never does.
func serve(ctx context.Context, stop context.CancelFunc, hup <-chan os.Signal, cfg config.Config, log *slog.Logger) error {
	srv, err := server.New(cfg, server.Options{Logger: log, Version: version})
	if err != nil {
		log.Error("vmcp cannot start", "error", err)
		return err
	}
	if err := srv.Start(ctx); err != nil {
		// Before stop: stop cancels ctx too.
		interrupted := ctx.Err() != nil
		stop()
		if interrupted {
			log.Info("interrupted during start-up")
			return shutdown(srv, cfg, log)
		}
		log.Error("vmcp cannot start", "error", err)
		return errors.Join(err, srv.Shutdown(context.Background()))
	}
	for ctx.Err() == nil {
		select {
		case <-hup:
			if err := srv.ReopenAuditLog(); err != nil {
				log.Error("reopen audit log", "error", err)
			} else {
				log.Info("audit log reopened")
			}
		case <-ctx.Done():
		}
	}
	stop()
	log.Info("shutting down")
	return shutdown(srv, cfg, log)
}

// shutdown shuts srv down and logs the outcome.
func shutdown(srv *server.Server, cfg config.Config, log *slog.Logger) error {
	// The grace is server.drainGrace and the drain is bounded by
	// server.shutdownTimeout; the extra minute only covers the cleanup
	// hooks (stdio children get their grace period).
	ctx, cancel := context.WithTimeout(context.Background(), cfg.Server.DrainGrace.D()+cfg.Server.ShutdownTimeout.D()+time.Minute)
	defer cancel()
	if err := srv.Shutdown(ctx); err != nil {
		log.Error("shutdown", "error", err)
		return err
	}
	log.Info("stopped")
	return nil
}

// printErrors writes each joined config error on its own line.
func printErrors(w io.Writer, path string, err error) {
	lines := strings.Split(err.Error(), "\n")
	fmt.Fprintf(w, "%s: %d error(s)\n", path, len(lines))
	for _, l := range lines {
		fmt.Fprintf(w, "  %s\n", l)
	}
}

func newLogger(w io.Writer, level string, asJSON bool) (*slog.Logger, error) {
	var lvl slog.Level
	if err := lvl.UnmarshalText([]byte(level)); err != nil {
		return nil, fmt.Errorf("--log-level: %w", err)
	}
	opts := &slog.HandlerOptions{Level: lvl}
	if asJSON {
		return slog.New(slog.NewJSONHandler(w, opts)), nil
	}
	return slog.New(slog.NewTextHandler(w, opts)), nil
}
