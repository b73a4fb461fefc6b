// Command bench is a load harness for vmcp. In one run it measures the demo
// backend directly over streamable HTTP, a plain httputil.ReverseProxy in
// front of it and vmcp (in-process) in front of it, with N concurrent MCP
// sessions in a closed loop of tools/call and then tools/list, and prints
// throughput, p50 and p99 per target.
//
//	go run ./bench                      # -d 5s -conns 1,16
//	go run ./bench -c 32 -d 10s         # one connection count
//	go run ./bench -cpuprofile cpu.out  # profile vmcp's tools/call phase
//	go run ./bench -catalogue 10000     # tools/list latency and RSS with a big catalogue
//	go run ./bench -ratelimit           # tools/call through vmcp, rate limits off vs on
//	go run ./bench -observability       # tools/call through vmcp, audit file + metrics off vs on
//	go run ./bench -sizes -rounds 3 -d 3s  # tools/call with 100 B, 8 KiB, 64 KiB echoed: direct, proxy, vmcp, vmcp+redis
//	go run ./bench -sessions -rounds 3 -d 3s  # tools/call through vmcp, sessions.store memory vs redis
//	go run ./bench -replicas -rounds 3 -d 3s  # 16 sessions through HAProxy: three vmcp replicas vs one, sessions in Redis
//	go run ./bench -authz -rounds 3 -d 3s     # tools/call through vmcp, no authorization vs 20 rules
//
// Everything listens on 127.0.0.1. The backend is a child process built
// from ./examples/backends/demo; the proxy, vmcp and the load generator
// share this process. Results go to stdout, logs to stderr. A run with
// errors exits 1: its numbers are not valid. (In -sizes mode the proxy and
// vmcp are child processes too, so that each one's CPU is measured alone;
// see sizes.go.)
//
// Besides latency and throughput, each row shows the CPU time per request
// of this process (load client plus proxy or vmcp) and of the backend, and
// how busy the whole machine was; on a small or shared machine throughput
// is bounded by CPU, and CPU per request is the steadier comparison. The
// load client's goroutines carry the pprof label bench=client, so
//
//	go tool pprof -top -tagignore bench=client cpu.out
//
// shows the in-process vmcp (and the Go runtime) without the client.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"os"
	"os/exec"
	"os/signal"
	"runtime"
	"runtime/pprof"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"text/tabwriter"
	"time"
)

// builtinTools is the number of tools the demo backend offers besides the
// synthetic ones (common + weather flavor); tools/list must return at least
// as many, plus -tools.
const builtinTools = 8

type options struct {
	dur        time.Duration
	listDur    time.Duration
	warm       time.Duration
	conns      []int
	tools      int
	catalogue  int
	catalogueN int
	cpuProfile string
	rateLimit  bool
	observe    bool
	sizes      []int // -sizes mode: argument sizes in bytes; nil: not that mode
	sessions   bool  // -sessions mode
	replicas   bool  // -replicas mode
	authz      bool  // -authz mode
	rounds     int
	tree       string // commit of the tree at start-up (what go run built)
}

func main() {
	if kind := os.Getenv(childEnv); kind != "" {
		os.Exit(runChild(kind)) // a target process of -sizes mode
	}
	slog.SetDefault(slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelInfo})))
	opts, err := parseFlags(os.Args[1:], os.Stderr)
	if errors.Is(err, flag.ErrHelp) {
		return
	}
	if err != nil {
		os.Exit(2)
	}
	opts.tree = treeVersion()
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()

	switch {
	case opts.catalogue > 0:
		err = runCatalogue(ctx, opts, os.Stdout)
	case opts.rateLimit:
		err = runRateLimit(ctx, opts, os.Stdout)
	case opts.observe:
		err = runObservability(ctx, opts, os.Stdout)
	case opts.sizes != nil:
		err = runSizes(ctx, opts, os.Stdout)
	case opts.sessions:
		err = runSessions(ctx, opts, os.Stdout)
	case opts.replicas:
		err = runReplicas(ctx, opts, os.Stdout)
	case opts.authz:
		err = runAuthz(ctx, opts, os.Stdout)
	default:
		err = runLoad(ctx, opts, os.Stdout)
	}
	if err != nil {
		slog.Error("bench failed", "error", err)
		stop()
		os.Exit(1)
	}
}

func parseFlags(args []string, stderr io.Writer) (options, error) {
	var o options
	fs := flag.NewFlagSet("bench", flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.DurationVar(&o.dur, "d", 5*time.Second, "measured duration of each tools/call phase")
	fs.DurationVar(&o.listDur, "list-d", 0, "measured duration of each tools/list phase (0: same as -d)")
	fs.DurationVar(&o.warm, "warmup", time.Second, "unrecorded warm-up before each measured phase")
	connsFlag := fs.String("conns", "1,16", "comma-separated numbers of concurrent sessions to run")
	c := fs.Int("c", 0, "run only this number of concurrent sessions (overrides -conns)")
	fs.IntVar(&o.tools, "tools", 0, "synthetic tools the backend registers (demo --tools)")
	fs.IntVar(&o.catalogue, "catalogue", 0, "catalogue mode: backend with this many tools; tools/list latency through vmcp and RSS")
	fs.IntVar(&o.catalogueN, "catalogue-n", 50, "sequential tools/list requests in catalogue mode")
	fs.BoolVar(&o.rateLimit, "ratelimit", false, "rate-limit mode: tools/call through vmcp with limits off, on (memory store) and on (Redis store, when redis-server is on PATH), -c connections (default 16)")
	fs.BoolVar(&o.observe, "observability", false, "observability mode: tools/call through vmcp with the audit trail (to a file) and Prometheus metrics off vs on, -c connections (default 16)")
	sizes := fs.Bool("sizes", false, "sizes mode: tools/call of echo with -size-bytes of text echoed back, at -conns, against the backend, a bare reverse proxy, vmcp and vmcp with Redis rate limits, in -rounds interleaved rounds; each target in a process of its own for CPU per call")
	sizeBytes := fs.String("size-bytes", defaultSizes, "sizes mode: comma-separated argument sizes in bytes")
	fs.BoolVar(&o.sessions, "sessions", false, "sessions mode: tools/call through vmcp with sessions.store memory vs redis (a redis-server child), at -conns, in -rounds interleaved rounds; each vmcp in a process of its own for CPU per call; Redis commands per call from INFO commandstats")
	fs.BoolVar(&o.replicas, "replicas", false, "replicas mode: -c connections (default 16), one MCP session each, through HAProxy (round robin, no affinity) to three vmcp replicas with sessions.store redis, vs one replica (redis, and memory) behind the same HAProxy, in -rounds interleaved rounds; CPU per call summed over every vmcp, HAProxy and redis-server")
	fs.BoolVar(&o.authz, "authz", false, "authz mode: tools/call through vmcp with no authorization section vs 20 rules (anonymous callers), at -conns, in -rounds interleaved rounds; each vmcp in a process of its own for CPU per call")
	fs.IntVar(&o.rounds, "rounds", 2, "rate-limit, observability, sizes, sessions, replicas and authz modes: interleaved rounds of the phases")
	fs.StringVar(&o.cpuProfile, "cpuprofile", "", "write a CPU profile of the vmcp tools/call phase (largest -conns) to this file; with -ratelimit, of each target's first measured phase to <file>.<target>; with -sizes, -sessions, -replicas and -authz, of each proxy and vmcp child's whole run to <file>.<target>")
	if err := fs.Parse(args); err != nil {
		return o, err
	}
	var err error
	switch {
	case fs.NArg() > 0:
		err = fmt.Errorf("unexpected arguments %q", fs.Args())
	case o.dur <= 0 || o.dur > 10*time.Minute:
		err = fmt.Errorf("-d %s must be in (0, 10m]", o.dur)
	case o.listDur < 0 || o.listDur > 10*time.Minute:
		err = fmt.Errorf("-list-d %s must be in [0, 10m]", o.listDur)
	case o.warm < 0 || o.warm > time.Minute:
		err = fmt.Errorf("-warmup %s must be in [0, 1m]", o.warm)
	case o.tools < 0 || o.catalogue < 0:
		err = errors.New("-tools and -catalogue must not be negative")
	case o.catalogueN < 1 || o.catalogueN > 10000:
		err = errors.New("-catalogue-n must be in [1, 10000]")
	case o.rounds < 1 || o.rounds > 100:
		err = errors.New("-rounds must be in [1, 100]")
	case btoi(o.rateLimit)+btoi(o.observe)+btoi(o.catalogue > 0)+btoi(*sizes)+btoi(o.sessions)+btoi(o.replicas)+btoi(o.authz) > 1:
		err = errors.New("-ratelimit, -observability, -catalogue, -sizes, -sessions, -replicas and -authz are different modes; pick one")
	}
	if err == nil && *sizes {
		o.sizes, err = parseSizes(*sizeBytes)
	}
	if err == nil {
		if *c > 0 {
			o.conns = []int{*c}
		} else if o.rateLimit || o.observe || o.replicas {
			o.conns = []int{16}
		} else {
			o.conns, err = parseConns(*connsFlag)
		}
	}
	if o.listDur == 0 {
		o.listDur = o.dur
	}
	if err != nil {
		fmt.Fprintf(stderr, "bench: %v\n", err)
	}
	return o, err
}

// parseSizes parses "100,8192,65536" into [100 8192 65536].
func parseSizes(s string) ([]int, error) {
	var out []int
	for _, f := range strings.Split(s, ",") {
		f = strings.TrimSpace(f)
		if f == "" {
			continue
		}
		n, err := strconv.Atoi(f)
		if err != nil || n < 1 || n > 512<<10 {
			return nil, fmt.Errorf("bad argument size %q (1..%d bytes)", f, 512<<10)
		}
		out = append(out, n)
	}
	if len(out) == 0 {
		return nil, errors.New("no argument sizes")
	}
	return out, nil
}

func btoi(b bool) int {
	if b {
		return 1
	}
	return 0
}

// target is one endpoint under test.
type target struct {
	name string
	url  string
	tool string // name of the echo tool at this endpoint
}

func runLoad(ctx context.Context, opts options, out io.Writer) (err error) {
	be, err := launchDemo(ctx, opts.tools)
	if err != nil {
		return err
	}
	defer be.stop()
	maxConns := slices.Max(opts.conns)
	px, err := startProxy(be.url, maxConns)
	if err != nil {
		return err
	}
	defer px.stop()
	vm, err := startVMCP(ctx, be.url, "", nil)
	if err != nil {
		return err
	}
	defer func() {
		if serr := vm.stop(); serr != nil {
			err = errors.Join(err, fmt.Errorf("vmcp shutdown: %w", serr))
		}
	}()
	slog.Info("targets up", "direct", be.url, "proxy", px.url, "vmcp", vm.url)

	loadStart := loadAvg()
	targets := []target{
		{"direct", be.url, "echo"},
		{"proxy", px.url, "echo"},
		{"vmcp", vm.url, backendName + "_echo"},
	}
	hc := newHTTPClient(maxConns)
	defer hc.CloseIdleConnections()

	var results []result
	for _, n := range opts.conns {
		for _, t := range targets {
			rs, err := loadTarget(ctx, hc, t, n, opts, be.cmd.Process.Pid, t.name == "vmcp" && n == maxConns)
			results = append(results, rs...)
			if err != nil {
				return err
			}
			if ctx.Err() != nil {
				return ctx.Err()
			}
		}
	}
	printReport(out, opts, loadStart, results)
	for _, r := range results {
		if r.errors > 0 {
			return fmt.Errorf("%d errors on %s %s c=%d (first: %v): run is not valid", r.errors, r.target, r.op, r.conns, r.firstErr)
		}
	}
	return nil
}

// loadTarget opens n sessions on t and runs the tools/call and the
// tools/list phases on them.
func loadTarget(ctx context.Context, hc *http.Client, t target, n int, opts options, backendPID int, profile bool) ([]result, error) {
	sessions := make([]*session, 0, n)
	defer func() {
		for _, s := range sessions {
			s.close()
		}
	}()
	for range n {
		s, err := openSession(ctx, hc, t.url)
		if err != nil {
			return nil, fmt.Errorf("%s: open session: %w", t.name, err)
		}
		sessions = append(sessions, s)
	}

	var onMeasure func() func()
	if profile && opts.cpuProfile != "" {
		onMeasure = func() func() {
			f, err := os.Create(opts.cpuProfile)
			if err != nil {
				slog.Error("cpu profile", "error", err)
				return nil
			}
			if err := pprof.StartCPUProfile(f); err != nil {
				slog.Error("cpu profile", "error", err)
				f.Close()
				return nil
			}
			return func() {
				pprof.StopCPUProfile()
				f.Close()
				slog.Info("wrote CPU profile", "file", opts.cpuProfile, "phase", "vmcp tools/call", "conns", n)
			}
		}
	}

	// metered wraps a measured phase's hook with CPU accounting.
	var use cpuUse
	metered := func(inner func() func()) func() func() {
		return func() func() {
			before := takeCPU(backendPID)
			var stopInner func()
			if inner != nil {
				stopInner = inner()
			}
			return func() {
				if stopInner != nil {
					stopInner()
				}
				use = takeCPU(backendPID).since(before)
			}
		}
	}

	slog.Info("tools/call", "target", t.name, "conns", n, "duration", opts.dur)
	call := closedLoop(ctx, sessions, callOp(t.tool), opts.warm, opts.dur, metered(onMeasure))
	call.target, call.cpu = t.name, use
	slog.Info("tools/list", "target", t.name, "conns", n, "duration", opts.listDur)
	list := closedLoop(ctx, sessions, listOp(builtinTools+opts.tools), opts.warm, opts.listDur, metered(nil))
	list.target, list.cpu = t.name, use
	return []result{call, list}, nil
}

func printReport(out io.Writer, opts options, loadStart string, results []result) {
	fmt.Fprintf(out, "vmcp bench: %s, GOMAXPROCS=%d, NumCPU=%d, -d %s (tools/list %s), warm-up %s, backend --tools %d\n",
		runtime.Version(), runtime.GOMAXPROCS(0), runtime.NumCPU(), opts.dur, opts.listDur, opts.warm, opts.tools)
	fmt.Fprintf(out, "vmcp tree: %s\n", opts.tree)
	fmt.Fprintf(out, "load average at start %s, at end %s (includes this run; other processes share these CPUs with the backend, vmcp and the load client)\n\n",
		loadStart, loadAvg())
	tw := tabwriter.NewWriter(out, 0, 0, 2, ' ', tabwriter.AlignRight)
	fmt.Fprintln(tw, "target\top\tconns\treq/s\tp50\tp99\terrors\t\tharness CPU/req\tbackend CPU/req\tmachine busy\t")
	for _, r := range results {
		perReq := func(d time.Duration) string {
			if r.count == 0 {
				return "-"
			}
			return fmtDur(d / time.Duration(r.count))
		}
		fmt.Fprintf(tw, "%s\t%s\t%d\t%.0f\t%s\t%s\t%d\t\t%s\t%s\t%.0f%%\t\n",
			r.target, r.op, r.conns, r.throughput(), fmtDur(r.percentile(0.50)), fmtDur(r.percentile(0.99)), r.errors,
			perReq(r.cpu.harness), perReq(r.cpu.backend), 100*r.cpu.busy)
	}
	tw.Flush()
	fmt.Fprintln(out, "(harness CPU = this process: load client + proxy or vmcp; the client's share is about the direct row's.",
		"machine busy = all CPUs, everything running on the machine.)")

	find := func(target, op string, conns int) (result, bool) {
		for _, r := range results {
			if r.target == target && r.op == op && r.conns == conns {
				return r, true
			}
		}
		return result{}, false
	}
	fmt.Fprintln(out, "\ntools/call ratios:")
	for _, n := range opts.conns {
		d, ok1 := find("direct", "tools/call", n)
		p, ok2 := find("proxy", "tools/call", n)
		v, ok3 := find("vmcp", "tools/call", n)
		if !ok1 || !ok2 || !ok3 || d.throughput() == 0 || p.throughput() == 0 {
			continue
		}
		fmt.Fprintf(out, "  conns=%-3d vmcp/direct throughput %.2f   vmcp/proxy throughput %.2f   (proxy/direct %.2f)\n",
			n, v.throughput()/d.throughput(), v.throughput()/p.throughput(), p.throughput()/d.throughput())
	}
	base := slices.Min(opts.conns)
	d, ok1 := find("direct", "tools/call", base)
	p, ok2 := find("proxy", "tools/call", base)
	v, ok3 := find("vmcp", "tools/call", base)
	if ok1 && ok2 && ok3 {
		note := ""
		if base != 1 {
			note = " (1 connection not run; smallest -conns used)"
		}
		fmt.Fprintf(out, "  p50 added over direct at %d connection(s)%s: vmcp %s, proxy %s\n", base, note,
			fmtSigned(v.percentile(0.5)-d.percentile(0.5)), fmtSigned(p.percentile(0.5)-d.percentile(0.5)))
	}
}

func fmtSigned(d time.Duration) string {
	if d < 0 {
		return "-" + fmtDur(-d)
	}
	return "+" + fmtDur(d)
}

// launchDemo builds the demo backend into a temporary directory and starts
// it with tools synthetic tools; the binary is removed once it runs.
func launchDemo(ctx context.Context, tools int) (*backend, error) {
	tmp, err := os.MkdirTemp("", "vmcp-bench-")
	if err != nil {
		return nil, err
	}
	defer os.RemoveAll(tmp)
	slog.Info("building demo backend")
	bin, err := buildDemo(ctx, tmp)
	if err != nil {
		return nil, err
	}
	return startBackend(bin, tools)
}

// runCatalogue starts vmcp in front of a backend with opts.catalogue
// synthetic tools and measures tools/list through vmcp and this process's
// RSS (which hosts vmcp; the backend is a separate process).
func runCatalogue(ctx context.Context, opts options, out io.Writer) (err error) {
	be, err := launchDemo(ctx, opts.catalogue)
	if err != nil {
		return err
	}
	defer be.stop()

	const status = "/proc/self/status"
	rssBefore := readStatusKB(status, "VmRSS:")
	started := time.Now()
	vm, err := startVMCP(ctx, be.url, "", nil)
	if err != nil {
		return err
	}
	startTook := time.Since(started)
	defer func() {
		if serr := vm.stop(); serr != nil {
			err = errors.Join(err, fmt.Errorf("vmcp shutdown: %w", serr))
		}
	}()
	rssStarted := readStatusKB(status, "VmRSS:")
	var msStarted runtime.MemStats
	runtime.ReadMemStats(&msStarted)

	hc := newHTTPClient(1)
	defer hc.CloseIdleConnections()
	want := builtinTools + opts.catalogue
	measure := func(name, url string) (result, int, error) {
		s, err := openSession(ctx, hc, url)
		if err != nil {
			return result{}, 0, fmt.Errorf("%s: open session: %w", name, err)
		}
		defer s.close()
		o := listOp(want)
		// One unrecorded request first, and one to learn the response size.
		size, err := listSize(ctx, s)
		if err != nil {
			return result{}, 0, fmt.Errorf("%s: tools/list: %w", name, err)
		}
		slog.Info("tools/list", "target", name, "requests", opts.catalogueN, "bytes", size)
		r := sequential(ctx, s, o, opts.catalogueN)
		r.target = name
		return r, size, nil
	}
	vr, vsize, err := measure("vmcp", vm.url)
	if err != nil {
		return err
	}
	rssAfter := readStatusKB(status, "VmRSS:")
	hwm := readStatusKB(status, "VmHWM:")
	dr, dsize, err := measure("direct", be.url)
	if err != nil {
		return err
	}
	var ms runtime.MemStats
	runtime.ReadMemStats(&ms)

	fmt.Fprintf(out, "vmcp bench, catalogue mode: %s, GOMAXPROCS=%d, backend --tools %d (%d tools listed), load average %s\n",
		runtime.Version(), runtime.GOMAXPROCS(0), opts.catalogue, want, loadAvg())
	fmt.Fprintf(out, "vmcp tree: %s\n\n", opts.tree)
	tw := tabwriter.NewWriter(out, 0, 0, 2, ' ', tabwriter.AlignRight)
	fmt.Fprintln(tw, "target\top\trequests\tp50\tp99\tmax\tresponse bytes\terrors\t")
	for _, x := range []struct {
		r    result
		size int
	}{{vr, vsize}, {dr, dsize}} {
		fmt.Fprintf(tw, "%s\t%s (sequential)\t%d\t%s\t%s\t%s\t%d\t%d\t\n", x.r.target, x.r.op, x.r.count,
			fmtDur(x.r.percentile(0.5)), fmtDur(x.r.percentile(0.99)), fmtDur(x.r.percentile(1)), x.size, x.r.errors)
	}
	tw.Flush()
	fmt.Fprintf(out, "\nvmcp start-up (connect + discover %d tools + install): %s\n", want, fmtDur(startTook))
	fmt.Fprintf(out, "harness RSS (hosts vmcp in-process, plus the load client):\n")
	fmt.Fprintf(out, "  before vmcp start     %7.1f MiB\n", mib(rssBefore))
	fmt.Fprintf(out, "  after vmcp start      %7.1f MiB   (Go heap in use %.1f MiB, before any client traffic)\n",
		mib(rssStarted), float64(msStarted.HeapInuse)/(1<<20))
	fmt.Fprintf(out, "  after %3d tools/list  %7.1f MiB   (peak VmHWM %.1f MiB; includes the client's buffers for the %d-byte responses)\n",
		opts.catalogueN+1, mib(rssAfter), mib(hwm), vsize)
	fmt.Fprintf(out, "  Go heap in use at end %7.1f MiB\n", float64(ms.HeapInuse)/(1<<20))
	fmt.Fprintf(out, "backend RSS (separate process, not included above): %.1f MiB\n", mib(be.rssKB()))
	for _, r := range []result{vr, dr} {
		if r.errors > 0 {
			return fmt.Errorf("%d errors on %s tools/list (first: %v): run is not valid", r.errors, r.target, r.firstErr)
		}
	}
	return nil
}

// treeVersion names the commit the measured vmcp was built from and how
// many tracked files differed from it (others may be editing the tree).
func treeVersion() string {
	head, err := exec.Command("git", "rev-parse", "--short=12", "HEAD").Output()
	if err != nil {
		return "unknown (git rev-parse failed)"
	}
	v := strings.TrimSpace(string(head))
	if st, err := exec.Command("git", "status", "--porcelain", "--untracked-files=no").Output(); err == nil {
		if t := strings.TrimSpace(string(st)); t != "" {
			n := strings.Count(t, "\n") + 1
			v += fmt.Sprintf(" + uncommitted changes in %d tracked files", n)
		}
	}
	return v
}

// loadAvg returns the 1, 5 and 15 minute load averages of the machine.
func loadAvg() string {
	data, err := os.ReadFile("/proc/loadavg")
	if err != nil {
		return "?"
	}
	f := strings.Fields(string(data))
	if len(f) < 3 {
		return "?"
	}
	return strings.Join(f[:3], " ")
}

func mib(kb int64) float64 { return float64(kb) / 1024 }

// listSize sends one tools/list and returns the size of its response.
func listSize(ctx context.Context, s *session) (int, error) {
	body, id := s.request("tools/list", nil)
	ex, err := s.post(ctx, body)
	if err != nil {
		return 0, err
	}
	if _, err := check(ex, id); err != nil {
		return 0, err
	}
	return len(ex.message), nil
}
