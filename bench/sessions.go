package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"os"
	"os/exec"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"sync/atomic"
	"text/tabwriter"
	"time"
)

// The -sessions mode measures what keeping client sessions in Redis costs
// a vmcp whose requests all stay on it: tools/call of the demo backend's
// echo (5 bytes) over MCP sessions, at -conns, against two vmcps that
// differ only in
//
//	memory  sessions: {store: memory}
//	redis   sessions: {store: redis, ttl: 30m} and redis.address, a
//	        redis-server child of the bench (TCP on loopback, no
//	        persistence)
//
// in interleaved rounds, the targets' order rotated each round. Both
// vmcps, the backend and redis-server are processes of their own; the
// load client is the only thing in this process. A replica caches the
// sessions it serves, so a request should cost no round trip to Redis:
// only a touch per session at most once a minute (sessions.ttl / 10),
// batched. The bench reads Redis's commandstats around every measured
// phase and prints the commands and round trips per call, so a round
// trip on the request's path shows.

// sessionsIssueTargets are the targets of the session store's issue.
const (
	targetSessionsThroughput = 0.95                   // req/s, redis / memory, at least
	targetSessionsP50        = 100 * time.Microsecond // p50 added at 1 connection, at most
)

// sessionsTTL is sessions.ttl of every Redis-backed vmcp of the bench.
const sessionsTTL = "30m"

// vmcpName is the name the bench's vmcp config gives every vmcp; the
// session store's keys are under vmcp:{bench}:.
const vmcpName = "bench"

// redisSessionsConfig is the config of a vmcp with sessions in Redis at
// addr.
func redisSessionsConfig(addr string) string {
	return fmt.Sprintf("redis: {address: %q}\nsessions: {store: redis, ttl: %s}\n", addr, sessionsTTL)
}

// roundRatios prints a[i]/b[i] for each round: the spread of a ratio
// whose rounds ran back to back.
func roundRatios(a, b []float64) string {
	out := make([]string, 0, len(a))
	for i := range min(len(a), len(b)) {
		out = append(out, fmtRatio(a[i]/b[i]))
	}
	return strings.Join(out, " ")
}

// childVMCP is one vmcp child process of the -sessions and -replicas modes.
type childVMCP struct {
	name     string
	proc     *backend
	warnings *atomic.Int64 // lines it logged (its logger drops what is below warn)
}

// startVMCPChild starts vmcp as a child process (this binary, see
// child.go) in front of backendURL with extra config. Every line it logs
// is a warning or an error; they are passed on to our stderr and counted.
// With profile set, the child writes a CPU profile of its whole life there.
func startVMCPChild(name, backendURL, extra, profile string) (*childVMCP, error) {
	exe, err := os.Executable()
	if err != nil {
		return nil, fmt.Errorf("%s: %w", name, err)
	}
	c := &childVMCP{name: name, warnings: &atomic.Int64{}}
	cmd := exec.Command(exe)
	cmd.Env = append(os.Environ(), childEnv+"=vmcp", childName+"="+name,
		childBackendEnv+"="+backendURL, childExtraEnv+"="+extra)
	if profile != "" {
		cmd.Env = append(cmd.Env, childProfileEnv+"="+profile)
	}
	cmd.Stderr = &lineCounter{match: []byte("level="), count: c.warnings}
	if c.proc, err = startChild(cmd, name); err != nil {
		return nil, err
	}
	return c, nil
}

// childSpec is one vmcp child to start: its name and extra config.
type childSpec struct{ name, extra string }

// warmChildren are vmcp children, each with maxConns MCP sessions on which
// one checked call has run (so the backend session is opened, and with
// Redis recorded, before any measured phase). close stops them all.
type warmChildren struct {
	targets []*childVMCP
	sess    map[string][]*session
	hc      *http.Client
}

// startWarmChildren starts a vmcp child per spec in front of backendURL and
// opens and warms maxConns sessions on each with call.
func startWarmChildren(ctx context.Context, backendURL string, specs []childSpec, cpuProfile string, maxConns int, call op) (*warmChildren, error) {
	w := &warmChildren{sess: make(map[string][]*session, len(specs))}
	for _, sp := range specs {
		t, err := startVMCPChild(sp.name, backendURL, sp.extra, profileFile(cpuProfile, sp.name))
		if err != nil {
			w.close()
			return nil, err
		}
		w.targets = append(w.targets, t)
	}
	w.hc = newHTTPClient(maxConns * len(w.targets))
	for _, t := range w.targets {
		for range maxConns {
			s, err := openSession(ctx, w.hc, t.proc.url)
			if err != nil {
				w.close()
				return nil, fmt.Errorf("%s: open session: %w", t.name, err)
			}
			w.sess[t.name] = append(w.sess[t.name], s)
			if _, err := s.do(ctx, call); err != nil {
				w.close()
				return nil, fmt.Errorf("%s: first tools/call: %w", t.name, err)
			}
		}
	}
	return w, nil
}

// close ends the sessions and stops the children.
func (w *warmChildren) close() {
	for _, ss := range w.sess {
		for _, s := range ss {
			s.close()
		}
	}
	if w.hc != nil {
		w.hc.CloseIdleConnections()
	}
	for _, t := range w.targets {
		t.proc.stop()
	}
}

// profileFile is where the child named name writes its CPU profile
// (-cpuprofile base), "" for none.
func profileFile(base, name string) string {
	if base == "" {
		return ""
	}
	return base + "." + strings.NewReplacer("+", "-", " ", "-").Replace(name)
}

// sessionsKey names one measured cell of the -sessions mode.
type sessionsKey struct {
	conns  int
	target string
}

// sessionsCell is what was measured on one target at one connection
// count, summed over the rounds.
type sessionsCell struct {
	total    result    // backend and client CPU in total.cpu
	rounds   []float64 // req/s of each round
	vmcpCPU  time.Duration
	redisCPU time.Duration
	redis    redisCounts
}

func runSessions(ctx context.Context, opts options, out io.Writer) (err error) {
	bin, err := exec.LookPath("redis-server")
	if err != nil {
		return errors.New("-sessions needs redis-server on PATH")
	}
	maxConns := slices.Max(opts.conns)
	be, err := launchDemo(ctx, opts.tools)
	if err != nil {
		return err
	}
	defer be.stop()
	rs, err := startRedisProc(ctx, bin)
	if err != nil {
		return err
	}
	defer rs.stop()

	specs := []childSpec{
		{"memory", "sessions: {store: memory}\n"},
		{"redis", redisSessionsConfig(rs.addr)},
	}
	call := callOp(backendName + "_echo")
	warm, err := startWarmChildren(ctx, be.url, specs, opts.cpuProfile, maxConns, call)
	if err != nil {
		return err
	}
	defer warm.close()
	targets, sess := warm.targets, warm.sess
	// The Redis target's sessions are in Redis, the memory target's are not.
	inRedis, err := rs.client.ZCard(ctx, "vmcp:{"+vmcpName+"}:sessions").Result()
	if err != nil {
		return fmt.Errorf("count the sessions in redis: %w", err)
	}
	if inRedis != int64(maxConns) {
		return fmt.Errorf("redis holds %d sessions, want %d (the redis target's): the store is not in use as expected", inRedis, maxConns)
	}
	slog.Info("sessions targets up", "conns", opts.conns, "rounds", opts.rounds, "sessions in redis", inRedis,
		"phases", len(targets)*len(opts.conns)*opts.rounds, "each", opts.warm+opts.dur)

	loadStart := loadAvg()
	cells := make(map[sessionsKey]*sessionsCell)
	pid := be.cmd.Process.Pid
	for round := range opts.rounds {
		for k, n := range opts.conns {
			// Rotated by round and by cell, as in -sizes.
			for _, t := range rotated(targets, round+k) {
				slog.Info("tools/call", "sessions", t.name, "conns", n, "round", round+1)
				var use cpuUse
				var vmcpUse, redisUse time.Duration
				var counts redisCounts
				r := closedLoop(ctx, sess[t.name][:n], call, opts.warm, opts.dur, func() func() {
					cBefore := rs.counts(ctx)
					before, vBefore, rBefore := takeCPU(pid), t.proc.cpu(), rs.cpu()
					return func() {
						use, vmcpUse, redisUse = takeCPU(pid).since(before), t.proc.cpu()-vBefore, rs.cpu()-rBefore
						counts = rs.counts(ctx).since(cBefore)
					}
				})
				r.target = t.name
				key := sessionsKey{n, t.name}
				c := cells[key]
				if c == nil {
					c = &sessionsCell{}
					cells[key] = c
				}
				c.rounds = append(c.rounds, r.throughput())
				c.total = addResults(c.total, r, use)
				c.vmcpCPU += vmcpUse
				c.redisCPU += redisUse
				c.redis = c.redis.add(counts)
				if ctx.Err() != nil {
					return ctx.Err()
				}
			}
		}
	}

	printSessionsReport(out, opts, rs, targets, cells, loadStart)

	return checkRun(targets, opts.conns, func(n int, name string) *result {
		if c := cells[sessionsKey{n, name}]; c != nil {
			return &c.total
		}
		return nil
	})
}

func printSessionsReport(out io.Writer, opts options, rs *redisProc, targets []*childVMCP, cells map[sessionsKey]*sessionsCell, loadStart string) {
	fmt.Fprintf(out, "vmcp bench -sessions: %s, GOMAXPROCS=%d, NumCPU=%d, -d %s per phase, warm-up %s, %d interleaved rounds, conns %v\n",
		runtime.Version(), runtime.GOMAXPROCS(0), runtime.NumCPU(), opts.dur, opts.warm, opts.rounds, opts.conns)
	fmt.Fprintf(out, "vmcp tree: %s\n", opts.tree)
	fmt.Fprintf(out, "tools/call of the demo backend's echo (5 bytes) on MCP sessions opened on the vmcp measured (every request stays on it)\n")
	fmt.Fprintf(out, "memory: sessions.store memory; redis: sessions.store redis, ttl %s, in %s on %s (TCP, persistence off); otherwise the same config\n",
		sessionsTTL, rs.version, rs.addr)
	fmt.Fprintf(out, "load average at start %s, at end %s; NumCPU=%d: the load client, backend, both vmcps and redis-server share these CPUs\n",
		loadStart, loadAvg(), runtime.NumCPU())
	fmt.Fprintf(out, "CPU/call: CPU of the process (from /proc/<pid>/stat around each measured phase) over the calls measured\n\n")

	get := func(n int, name string) *sessionsCell { return cells[sessionsKey{n, name}] }

	fmt.Fprintf(out, "tools/call, redis vs memory (targets of the issue in brackets: req/s >= %.2f, p50 added at 1 connection <= %s):\n",
		targetSessionsThroughput, fmtDur(targetSessionsP50))
	tw := tabwriter.NewWriter(out, 0, 0, 2, ' ', tabwriter.AlignRight)
	fmt.Fprintln(tw, "conns\treq/s memory\tredis\tredis/memory\tper round\tp50 memory\tredis\tp50 added\tCPU/call vmcp memory\tvmcp redis\tredis-server\t(vmcp+redis-server)/memory\t")
	for _, n := range opts.conns {
		m, r := get(n, "memory"), get(n, "redis")
		if m == nil || r == nil {
			continue
		}
		ratio := r.total.throughput() / m.total.throughput()
		added := r.total.percentile(0.5) - m.total.percentile(0.5)
		addedCell := fmtSigned(added)
		if n == 1 {
			word := "ok"
			if added > targetSessionsP50 {
				word = "MISS"
			}
			addedCell = fmt.Sprintf("%s [<=%s %s]", fmtSigned(added), fmtDur(targetSessionsP50), word)
		}
		fmt.Fprintf(tw, "%d\t%.0f\t%.0f\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t\n", n, m.total.throughput(), r.total.throughput(),
			verdict(ratio, targetSessionsThroughput, true), roundRatios(r.rounds, m.rounds),
			fmtDur(m.total.percentile(0.5)), fmtDur(r.total.percentile(0.5)), addedCell,
			fmtNs(m.total.perCall(m.vmcpCPU)), fmtNs(r.total.perCall(r.vmcpCPU)), fmtNs(r.total.perCall(r.redisCPU)),
			fmtRatio(r.total.perCall(r.vmcpCPU+r.redisCPU)/m.total.perCall(m.vmcpCPU)))
	}
	tw.Flush()

	fmt.Fprintln(out, "\nRedis commands during the measured phases (INFO commandstats, the bench's own INFO left out; reads = round trips, a pipeline is one):")
	for _, n := range opts.conns {
		for _, t := range targets {
			c := get(n, t.name)
			if c == nil {
				continue
			}
			fmt.Fprintf(out, "  %-6s conns=%-3d %d calls: %d commands (%.4f/call), %d reads (%.4f/call): %s\n", t.name, n, c.total.count,
				c.redis.total(), float64(c.redis.total())/float64(max(c.total.count, 1)),
				c.redis.reads, float64(c.redis.reads)/float64(max(c.total.count, 1)), c.redis.describe(c.total.count))
		}
	}
	fmt.Fprintln(out, "(the redis target should need no round trip per call: only a batched touch per session at most every min(ttl/10, 1m);",
		"the memory vmcp is not connected to Redis at all)")

	fmt.Fprintln(out, "\ndetails:")
	tw = tabwriter.NewWriter(out, 0, 0, 2, ' ', tabwriter.AlignRight)
	fmt.Fprintln(tw, "conns\ttarget\treq/s\tper round\tp50\tp99\terrors\tvmcp CPU\tredis CPU\tbackend CPU\tclient CPU\tmachine busy\t")
	for _, n := range opts.conns {
		for _, t := range targets {
			c := get(n, t.name)
			if c == nil {
				continue
			}
			per := make([]string, len(c.rounds))
			for i, x := range c.rounds {
				per[i] = strconv.FormatFloat(x, 'f', 0, 64)
			}
			fmt.Fprintf(tw, "%d\t%s\t%.0f\t%s\t%s\t%s\t%d\t%s\t%s\t%s\t%s\t%.0f%%\t\n", n, t.name, c.total.throughput(), strings.Join(per, " "),
				fmtDur(c.total.percentile(0.5)), fmtDur(c.total.percentile(0.99)), c.total.errors,
				fmtNs(c.total.perCall(c.vmcpCPU)), fmtNs(c.total.perCall(c.redisCPU)), fmtNs(c.total.perCall(c.total.cpu.backend)),
				fmtNs(c.total.perCall(c.total.cpu.harness)), 100*c.total.cpu.busy)
		}
	}
	tw.Flush()
	fmt.Fprintln(out, "(CPU columns are per call: vmcp = the target's own process; redis = redis-server (the memory target does not use it);",
		"backend = the demo backend; client = this process, the load client alone; machine busy = all CPUs, everything on the machine.)")
}
