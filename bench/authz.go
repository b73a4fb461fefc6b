package main

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"math"
	"runtime"
	"strconv"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/vmcp/vmcp/internal/benchpolicy"
)

// The -authz mode measures what authorization costs a call: tools/call of
// the demo backend's echo (5 bytes) over MCP sessions, at -conns, against
// two vmcps that differ only in
//
//	none    no authorization section (everyone may use everything)
//	rules   authzBenchConfig: 20 rules, default deny
//
// in interleaved rounds, the targets' order rotated each round. Both vmcps
// and the backend are processes of their own, so CPU per call is each
// vmcp's own; the load client is the only thing in this process. Callers
// are anonymous (identity.subject "anonymous", no claims); the rules are
// written so that the echo call still evaluates conditions on the
// arguments, the name, the method, the backend and the identity before a
// rule allows it.

// targetAuthzThroughput is issue 14 item 6's target: tools/call req/s with
// 20 rules over req/s without, at least.
const targetAuthzThroughput = 0.95

// authzBenchConfig is the authorization section of the rules target: the
// benchmarks' 20 rules (internal/benchpolicy) for demo_echo, whose deny
// rules 4, 8, 9 and 15 are evaluated and do not hold and rule 19 allows.
// Rule 7 denies the demo's catalogue-changing tools, which the run checks
// to be hidden and denied.
var authzBenchConfig = benchpolicy.YAML(benchpolicy.Rules("demo", "echo", "text"))

// authzKey names one measured cell of the -authz mode.
type authzKey struct {
	conns  int
	target string
}

// authzCell is what was measured on one target at one connection count,
// summed over the rounds.
type authzCell struct {
	total   result    // backend and client CPU in total.cpu
	rounds  []float64 // req/s of each round
	vmcpCPU time.Duration
}

func runAuthz(ctx context.Context, opts options, out io.Writer) (err error) {
	if n := strings.Count(authzBenchConfig, "{effect:"); n != 20 {
		return fmt.Errorf("authzBenchConfig has %d rules, want 20", n)
	}
	maxConns := 0
	for _, n := range opts.conns {
		maxConns = max(maxConns, n)
	}
	be, err := launchDemo(ctx, opts.tools)
	if err != nil {
		return err
	}
	defer be.stop()

	specs := []childSpec{
		{"none", ""},
		{"rules", authzBenchConfig},
	}
	call := callOp(backendName + "_echo")
	warm, err := startWarmChildren(ctx, be.url, specs, opts.cpuProfile, maxConns, call)
	if err != nil {
		return err
	}
	defer warm.close()
	targets, sess := warm.targets, warm.sess
	policyNote, err := checkAuthzTargets(ctx, sess["none"][0], sess["rules"][0])
	if err != nil {
		return err
	}
	slog.Info("authz targets up", "conns", opts.conns, "rounds", opts.rounds, "check", policyNote,
		"phases", len(targets)*len(opts.conns)*opts.rounds, "each", opts.warm+opts.dur)

	loadStart := loadAvg()
	cells := make(map[authzKey]*authzCell)
	pid := be.cmd.Process.Pid
	for round := range opts.rounds {
		for k, n := range opts.conns {
			// Rotated by round and by cell, as in -sizes.
			for _, t := range rotated(targets, round+k) {
				slog.Info("tools/call", "authorization", t.name, "conns", n, "round", round+1)
				var use cpuUse
				var vmcpUse time.Duration
				r := closedLoop(ctx, sess[t.name][:n], call, opts.warm, opts.dur, func() func() {
					before, vBefore := takeCPU(pid), t.proc.cpu()
					return func() {
						use, vmcpUse = takeCPU(pid).since(before), t.proc.cpu()-vBefore
					}
				})
				r.target = t.name
				key := authzKey{n, t.name}
				c := cells[key]
				if c == nil {
					c = &authzCell{}
					cells[key] = c
				}
				c.rounds = append(c.rounds, r.throughput())
				c.total = addResults(c.total, r, use)
				c.vmcpCPU += vmcpUse
				if ctx.Err() != nil {
					return ctx.Err()
				}
			}
		}
	}

	printAuthzReport(out, opts, cells, policyNote, loadStart)

	return checkRun(targets, opts.conns, func(n int, name string) *result {
		if c := cells[authzKey{n, name}]; c != nil {
			return &c.total
		}
		return nil
	})
}

// checkAuthzTargets makes sure the rules target enforces its policy and
// the other one has none: the rules target lists two tools fewer
// (demo_add_tool and demo_remove_tool, denied by rule 7) and answers a
// call of demo_remove_tool as the target with no rules answers a tool that
// does not exist. It returns a line for the report.
func checkAuthzTargets(ctx context.Context, none, rules *session) (string, error) {
	names := func(s *session) ([]string, error) {
		body, id := s.request("tools/list", nil)
		ex, err := s.post(ctx, body)
		if err != nil {
			return nil, err
		}
		res, err := check(ex, id)
		if err != nil {
			return nil, err
		}
		var r struct {
			Tools []struct {
				Name string `json:"name"`
			} `json:"tools"`
		}
		if err := json.Unmarshal(res, &r); err != nil {
			return nil, err
		}
		out := make([]string, len(r.Tools))
		for i, t := range r.Tools {
			out[i] = t.Name
		}
		return out, nil
	}
	all, err := names(none)
	if err != nil {
		return "", fmt.Errorf("none: tools/list: %w", err)
	}
	mine, err := names(rules)
	if err != nil {
		return "", fmt.Errorf("rules: tools/list: %w", err)
	}
	has := func(list []string, name string) bool {
		for _, n := range list {
			if n == name {
				return true
			}
		}
		return false
	}
	hidden := backendName + "_remove_tool"
	if !has(all, hidden) || has(mine, hidden) || len(mine) != len(all)-2 {
		return "", fmt.Errorf("the rules target lists %d tools (%s: %v), the other %d (%v): the policy is not in force as expected",
			len(mine), hidden, has(mine, hidden), len(all), has(all, hidden))
	}
	answer := func(s *session, tool string) (string, error) {
		body, _ := s.request("tools/call", map[string]any{"name": tool, "arguments": map[string]any{"name": "no_such_tool"}})
		ex, err := s.post(ctx, body)
		if err != nil {
			return "", err
		}
		// The id differs; compare the rest.
		var m map[string]json.RawMessage
		if err := json.Unmarshal(ex.message, &m); err != nil {
			return "", fmt.Errorf("decode %s: %w", truncate(ex.message, 200), err)
		}
		delete(m, "id")
		b, _ := json.Marshal(m)
		return strconv.Itoa(ex.status) + " " + strings.ReplaceAll(string(b), tool, "TOOL"), nil
	}
	denied, err := answer(rules, hidden)
	if err != nil {
		return "", fmt.Errorf("rules: tools/call %s: %w", hidden, err)
	}
	// Unknown to the target with no rules, which has no authz stage.
	unknown, err := answer(none, backendName+"_no_such")
	if err != nil {
		return "", fmt.Errorf("none: tools/call of an unknown tool: %w", err)
	}
	if denied != unknown {
		return "", fmt.Errorf("rules: a denied call is answered %s, an unknown one %s: the policy is not in force as expected", denied, unknown)
	}
	return fmt.Sprintf("rules target lists %d of %d tools; a call of %s is answered as an unknown tool", len(mine), len(all), hidden), nil
}

func printAuthzReport(out io.Writer, opts options, cells map[authzKey]*authzCell, policyNote, loadStart string) {
	fmt.Fprintf(out, "vmcp bench -authz: %s, GOMAXPROCS=%d, NumCPU=%d, -d %s per phase, warm-up %s, %d interleaved rounds, conns %v\n",
		runtime.Version(), runtime.GOMAXPROCS(0), runtime.NumCPU(), opts.dur, opts.warm, opts.rounds, opts.conns)
	fmt.Fprintf(out, "vmcp tree: %s\n", opts.tree)
	fmt.Fprintf(out, "tools/call of the demo backend's echo (5 bytes), anonymous callers; none: no authorization section; rules: 20 rules, default deny, 4 conditions evaluated per call (arguments, identity, name, method) and a fifth allowing it (backend, identity)\n")
	fmt.Fprintf(out, "check: %s\n", policyNote)
	fmt.Fprintf(out, "load average at start %s, at end %s; NumCPU=%d: the load client, the backend and both vmcps share these CPUs\n",
		loadStart, loadAvg(), runtime.NumCPU())
	fmt.Fprintf(out, "CPU/call: CPU of the process (from /proc/<pid>/stat around each measured phase) over the calls measured\n\n")

	get := func(n int, name string) *authzCell { return cells[authzKey{n, name}] }

	fmt.Fprintf(out, "tools/call, 20 rules vs none (target of issue 14 in brackets: req/s >= %.2f):\n", targetAuthzThroughput)
	tw := tabwriter.NewWriter(out, 0, 0, 2, ' ', tabwriter.AlignRight)
	fmt.Fprintln(tw, "conns\treq/s none\trules\trules/none\tper round\tp50 none\trules\tp50 added\tvmcp CPU/call none\trules\tadded\trules/none\t")
	for _, n := range opts.conns {
		a, r := get(n, "none"), get(n, "rules")
		if a == nil || r == nil {
			continue
		}
		ratio := r.total.throughput() / a.total.throughput()
		ca, cr := a.total.perCall(a.vmcpCPU), r.total.perCall(r.vmcpCPU)
		fmt.Fprintf(tw, "%d\t%.0f\t%.0f\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t\n", n, a.total.throughput(), r.total.throughput(),
			verdict(ratio, targetAuthzThroughput, true), roundRatios(r.rounds, a.rounds),
			fmtDur(a.total.percentile(0.5)), fmtDur(r.total.percentile(0.5)), fmtSigned(r.total.percentile(0.5)-a.total.percentile(0.5)),
			fmtNs(ca), fmtNs(cr), fmtSignedNs(cr-ca), fmtRatio(cr/ca))
	}
	tw.Flush()

	fmt.Fprintln(out, "\ndetails:")
	tw = tabwriter.NewWriter(out, 0, 0, 2, ' ', tabwriter.AlignRight)
	fmt.Fprintln(tw, "conns\ttarget\treq/s\tper round\tp50\tp99\terrors\tvmcp CPU\tbackend CPU\tclient CPU\tmachine busy\t")
	for _, n := range opts.conns {
		for _, name := range []string{"none", "rules"} {
			c := get(n, name)
			if c == nil {
				continue
			}
			per := make([]string, len(c.rounds))
			for i, x := range c.rounds {
				per[i] = strconv.FormatFloat(x, 'f', 0, 64)
			}
			fmt.Fprintf(tw, "%d\t%s\t%.0f\t%s\t%s\t%s\t%d\t%s\t%s\t%s\t%.0f%%\t\n", n, name, c.total.throughput(), strings.Join(per, " "),
				fmtDur(c.total.percentile(0.5)), fmtDur(c.total.percentile(0.99)), c.total.errors,
				fmtNs(c.total.perCall(c.vmcpCPU)), fmtNs(c.total.perCall(c.total.cpu.backend)),
				fmtNs(c.total.perCall(c.total.cpu.harness)), 100*c.total.cpu.busy)
		}
	}
	tw.Flush()
	fmt.Fprintln(out, "(CPU columns are per call: vmcp = the target's own process; backend = the demo backend;",
		"client = this process, the load client alone; machine busy = all CPUs, everything on the machine.)")
}

// fmtSignedNs prints a signed duration in nanoseconds, or "-".
func fmtSignedNs(v float64) string {
	if math.IsNaN(v) {
		return "-"
	}
	return fmtSigned(time.Duration(v))
}
