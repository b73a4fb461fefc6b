package main

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"runtime/pprof"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"text/tabwriter"
	"time"

	"github.com/redis/go-redis/v9"
)

// rateLimitBucket is the bucket of the limits-on targets: large enough
// never to reject (a rejection is an error of the run), so every call pays
// a full check and take.
const rateLimitBucket = "{maxTokens: 1000000000, refillPeriod: 1s}"

// rateLimitTarget is one vmcp of the rate-limit mode.
type rateLimitTarget struct {
	comparedVMCP               // named off, memory, redis
	failOpen     *atomic.Int64 // fail-open warnings vmcp logged
	redisCPU     time.Duration // redis-server's CPU in the measured phases
	redis        redisStats    // redis-server's counters over the measured phases
}

// runRateLimit measures tools/call through vmcp with rate limits off and on
// (memory store; Redis store when redis-server is on PATH) with the same
// connections, in interleaved rounds so that drift of a shared machine hits
// every target alike, and prints throughput and the on/off ratio per store.
func runRateLimit(ctx context.Context, opts options, out io.Writer) (err error) {
	n := opts.conns[len(opts.conns)-1]
	be, err := launchDemo(ctx, opts.tools)
	if err != nil {
		return err
	}
	defer be.stop()

	// checkTimeout as in -sizes: on an oversubscribed machine the default
	// 50 ms is exceeded, and a check decided without Redis would make the
	// Redis target look cheaper than it is.
	limits := "rateLimiting:\n  shared: " + rateLimitBucket + "\n  checkTimeout: " + sizesRedisCheckTimeout + "\n"
	type spec struct{ name, extra string }
	specs := []spec{{"off", ""}, {"memory", limits}}
	redisNote := "redis: skipped (redis-server is not on PATH)"
	var rs *redisProc
	if bin, lerr := exec.LookPath("redis-server"); lerr == nil {
		rs, err = startRedisProc(ctx, bin)
		if err != nil {
			return err
		}
		defer rs.stop()
		specs = append(specs, spec{"redis", limits + fmt.Sprintf("redis: {address: %q}\n", rs.addr)},
			spec{"redis-unix", limits + fmt.Sprintf("redis: {address: %q}\n", "unix://"+rs.sock)})
		redisNote = fmt.Sprintf("redis: %s on %s and unix socket %s (persistence off), started by the bench", rs.version, rs.addr, rs.sock)
	}

	var targets []*rateLimitTarget
	defer func() {
		for _, t := range targets {
			err = errors.Join(err, t.stop())
		}
	}()
	hc := newHTTPClient(n * len(specs))
	defer hc.CloseIdleConnections()
	for _, sp := range specs {
		t := &rateLimitTarget{comparedVMCP: comparedVMCP{name: sp.name}, failOpen: &atomic.Int64{}}
		logger := slog.New(&countingHandler{
			next:  slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelWarn}).WithAttrs([]slog.Attr{slog.String("component", "vmcp-"+sp.name)}),
			match: "fail open", count: t.failOpen,
		})
		targets = append(targets, t)
		if err := t.start(ctx, hc, be.url, sp.extra, n, logger); err != nil {
			return err
		}
	}
	slog.Info("rate-limit targets up", "targets", len(targets), "conns", n, "rounds", opts.rounds)

	loadStart := loadAvg()
	call := callOp(backendName + "_echo")
	pid := be.cmd.Process.Pid
	for round := range opts.rounds {
		for _, t := range rotated(targets, round) {
			slog.Info("tools/call", "limits", t.name, "round", round+1, "conns", n, "duration", opts.dur)
			var use cpuUse
			var redisUse time.Duration
			var redisDelta redisStats
			r := closedLoop(ctx, t.sessions, call, opts.warm, opts.dur, func() func() {
				stopProfile := startProfile(opts.cpuProfile, t.name, round)
				sBefore := rs.stats(ctx)
				before, rBefore := takeCPU(pid), rs.cpu()
				return func() {
					use, redisUse = takeCPU(pid).since(before), rs.cpu()-rBefore
					redisDelta = rs.stats(ctx).since(sBefore)
					stopProfile()
				}
			})
			t.redisCPU += redisUse
			t.redis = t.redis.add(redisDelta)
			t.addRound(r, use)
			if ctx.Err() != nil {
				return ctx.Err()
			}
		}
	}

	// The Redis target did check every call: in its measured phases Redis
	// ran the script at least once per measured call. The counters are
	// read around each measured phase, so warm-ups are not in them; the
	// reads Redis processed are its round trips (a pipeline is one).
	redisKeyNote := ""
	var unchecked error // reported after the table, after a fail-open (which explains it)
	for _, rt := range targets {
		if rs == nil || !strings.HasPrefix(rt.name, "redis") {
			continue
		}
		st, measured := rt.redis, rt.total.count
		if st.err != nil || st.scripts < int64(measured) {
			unchecked = errors.Join(unchecked, fmt.Errorf("%s: redis ran the script %d times for %d measured calls (%v): the limits were not checked", rt.name, st.scripts, measured, st.err))
		}
		redisKeyNote += fmt.Sprintf("%s, measured phases only: %d script runs (EVALSHA+EVAL) for %d calls (%.3f per call), %d reads processed (%.3f per call, %.2f scripts per read), script time %.2fµs per run (INFO commandstats)\n",
			rt.name, st.scripts, measured, float64(st.scripts)/float64(max(measured, 1)),
			st.reads, float64(st.reads)/float64(max(measured, 1)), float64(st.scripts)/float64(max(st.reads, 1)),
			float64(st.scriptUsec)/float64(max(st.scripts, 1)))
	}

	fmt.Fprintf(out, "vmcp bench -ratelimit: %s, GOMAXPROCS=%d, NumCPU=%d, -d %s per phase, warm-up %s, %d interleaved rounds, %d connections\n",
		runtime.Version(), runtime.GOMAXPROCS(0), runtime.NumCPU(), opts.dur, opts.warm, opts.rounds, n)
	fmt.Fprintf(out, "vmcp tree: %s\n", opts.tree)
	fmt.Fprintf(out, "limits on: rateLimiting.shared %s (never rejects); %s\n", rateLimitBucket, redisNote)
	fmt.Fprintf(out, "load average at start %s, at end %s\n\n", loadStart, loadAvg())
	tw := tabwriter.NewWriter(out, 0, 0, 2, ' ', tabwriter.AlignRight)
	fmt.Fprintln(tw, "limits\tconns\treq/s\tper round\tp50\tp99\terrors\tfail-open warnings\t\tharness CPU/req\tbackend CPU/req\tredis CPU/req\tmachine busy\t")
	for _, t := range targets {
		r := t.total
		perReq := func(d time.Duration) string {
			if r.count == 0 {
				return "-"
			}
			return fmtDur(d / time.Duration(r.count))
		}
		per := make([]string, len(t.rounds))
		for i, x := range t.rounds {
			per[i] = strconv.FormatFloat(x, 'f', 0, 64)
		}
		redisCPU := "-"
		if rs != nil {
			redisCPU = perReq(t.redisCPU)
		}
		fmt.Fprintf(tw, "%s\t%d\t%.0f\t%s\t%s\t%s\t%d\t%d\t\t%s\t%s\t%s\t%.0f%%\t\n",
			t.name, n, r.throughput(), strings.Join(per, " "), fmtDur(r.percentile(0.50)), fmtDur(r.percentile(0.99)),
			r.errors, t.failOpen.Load(), perReq(r.cpu.harness), perReq(r.cpu.backend), redisCPU, 100*r.cpu.busy)
	}
	tw.Flush()
	fmt.Fprint(out, redisKeyNote)
	fmt.Fprintln(out, "(harness CPU = this process: load client + vmcp, including the stage and its Redis client; redis CPU = the redis-server process.",
		"On a small machine throughput is bounded by CPU: every CPU-µs the check adds, in vmcp or in redis-server, is taken from the rest.)")
	fmt.Fprintln(out, "\ntools/call throughput, limits on / limits off (target >= 0.85):")
	off := targets[0].total
	// cpuPerCall is the CPU of this process, the backend and redis-server
	// per measured call of t: on a CPU-bound host, throughput goes as its
	// inverse, and it moves less than throughput with the host's other load.
	cpuPerCall := func(t *rateLimitTarget) float64 {
		if t.total.count == 0 {
			return 0
		}
		return float64(t.total.cpu.harness+t.total.cpu.backend+t.redisCPU) / float64(t.total.count)
	}
	offCPU := cpuPerCall(targets[0])
	for _, t := range targets[1:] {
		ratio := 0.0
		if off.throughput() > 0 {
			ratio = t.total.throughput() / off.throughput()
		}
		verdict := "ok"
		if ratio < 0.85 {
			verdict = "BELOW TARGET"
		}
		cpuRatio := 0.0
		if c := cpuPerCall(t); c > 0 {
			cpuRatio = offCPU / c
		}
		fmt.Fprintf(out, "  %-7s %.2f  %s   (p50 %s vs %s off; CPU per call off/on %.2f)\n", t.name, ratio, verdict,
			fmtSigned(t.total.percentile(0.5)-off.percentile(0.5)), fmtDur(off.percentile(0.5)), cpuRatio)
	}
	fmt.Fprintln(out, "(CPU per call = this process + backend + redis-server; off/on is the throughput ratio a CPU-bound host would show, steadier than throughput on a shared machine.)")

	for _, t := range targets {
		if t.total.errors > 0 {
			return fmt.Errorf("%d errors with limits %s (first: %v): run is not valid", t.total.errors, t.name, t.total.firstErr)
		}
		if t.failOpen.Load() > 0 {
			return fmt.Errorf("limits %s: the store failed and vmcp let calls through unchecked (fail open): run is not valid", t.name)
		}
	}
	return unchecked
}

// addResults merges one round r (CPU use u) into the sum acc.
func addResults(acc, r result, u cpuUse) result {
	acc.op, acc.conns = r.op, r.conns
	acc.count += r.count
	acc.errors += r.errors
	if acc.firstErr == nil {
		acc.firstErr = r.firstErr
	}
	busy := acc.cpu.busy*acc.elapsed.Seconds() + u.busy*r.elapsed.Seconds()
	acc.elapsed += r.elapsed
	acc.cpu.harness += u.harness
	acc.cpu.backend += u.backend
	if acc.elapsed > 0 {
		acc.cpu.busy = busy / acc.elapsed.Seconds()
	}
	acc.samples = mergeSorted(acc.samples, r.samples)
	return acc
}

// mergeSorted merges two sorted slices.
func mergeSorted(a, b []time.Duration) []time.Duration {
	out := make([]time.Duration, 0, len(a)+len(b))
	i, j := 0, 0
	for i < len(a) && j < len(b) {
		if a[i] <= b[j] {
			out = append(out, a[i])
			i++
		} else {
			out = append(out, b[j])
			j++
		}
	}
	out = append(out, a[i:]...)
	return append(out, b[j:]...)
}

// countingHandler counts the records whose message contains match and
// passes every record on to next.
type countingHandler struct {
	next  slog.Handler
	match string
	count *atomic.Int64
}

func (h *countingHandler) Enabled(ctx context.Context, l slog.Level) bool {
	return l >= slog.LevelWarn || h.next.Enabled(ctx, l)
}

func (h *countingHandler) Handle(ctx context.Context, r slog.Record) error {
	if strings.Contains(r.Message, h.match) {
		h.count.Add(1)
	}
	if !h.next.Enabled(ctx, r.Level) {
		return nil
	}
	return h.next.Handle(ctx, r)
}

func (h *countingHandler) WithAttrs(as []slog.Attr) slog.Handler {
	return &countingHandler{next: h.next.WithAttrs(as), match: h.match, count: h.count}
}

func (h *countingHandler) WithGroup(name string) slog.Handler {
	return &countingHandler{next: h.next.WithGroup(name), match: h.match, count: h.count}
}

// redisProc is a redis-server child of the bench.
type redisProc struct {
	addr    string
	sock    string // its Unix socket, in a directory of its own
	version string
	client  *redis.Client
	cmd     *exec.Cmd
	done    chan struct{}
	once    sync.Once
}

// startRedisProc runs bin on a free loopback port with persistence off and
// waits until it answers PING.
func startRedisProc(ctx context.Context, bin string) (*redisProc, error) {
	var lastErr error
	for range 3 { // a free port can be taken before redis binds it
		p, err := tryStartRedisProc(ctx, bin)
		if err == nil {
			return p, nil
		}
		lastErr = err
	}
	return nil, fmt.Errorf("start redis-server: %w", lastErr)
}

func tryStartRedisProc(ctx context.Context, bin string) (*redisProc, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, err
	}
	port := ln.Addr().(*net.TCPAddr).Port
	ln.Close()
	var logs lockedBuffer
	dir, err := os.MkdirTemp("", "vmcp-bench-redis-")
	if err != nil {
		return nil, err
	}
	sock := filepath.Join(dir, "redis.sock")
	cmd := exec.Command(bin, "--port", strconv.Itoa(port), "--bind", "127.0.0.1",
		"--unixsocket", sock, "--unixsocketperm", "700",
		"--save", "", "--appendonly", "no", "--databases", "1")
	cmd.Stdout, cmd.Stderr = &logs, &logs
	if err := cmd.Start(); err != nil {
		os.RemoveAll(dir)
		return nil, err
	}
	p := &redisProc{addr: net.JoinHostPort("127.0.0.1", strconv.Itoa(port)), sock: sock, cmd: cmd, done: make(chan struct{})}
	go func() {
		_ = cmd.Wait()
		close(p.done)
	}()
	p.client = redis.NewClient(&redis.Options{Addr: p.addr})
	deadline := time.Now().Add(10 * time.Second)
	for {
		pctx, cancel := context.WithTimeout(ctx, 200*time.Millisecond)
		err := p.client.Ping(pctx).Err()
		cancel()
		if err == nil {
			break
		}
		select {
		case <-p.done:
			p.client.Close()
			os.RemoveAll(dir)
			return nil, fmt.Errorf("redis-server exited: %s", logs.String())
		default:
		}
		if time.Now().After(deadline) || ctx.Err() != nil {
			p.stop()
			return nil, fmt.Errorf("redis-server on %s does not answer PING: %w", p.addr, err)
		}
		time.Sleep(10 * time.Millisecond)
	}
	p.version = "redis-server"
	if info, err := p.client.Info(ctx, "server").Result(); err == nil {
		for _, line := range strings.Split(info, "\n") {
			if v, ok := strings.CutPrefix(strings.TrimSpace(line), "redis_version:"); ok {
				p.version = "redis-server " + v
			}
		}
	}
	return p, nil
}

// cpu is the CPU time the server has used so far; 0 for a nil p.
func (p *redisProc) cpu() time.Duration {
	if p == nil {
		return 0
	}
	return procCPU(p.cmd.Process.Pid)
}

// redisStats are counters of a redis-server: the EVALSHA and EVAL commands
// it ran and their time inside Redis, and the reads it processed (one per
// round trip, a pipeline included). err is the first failure to read them.
type redisStats struct {
	scripts, scriptUsec, reads int64
	err                        error
}

// since is s minus an earlier reading.
func (s redisStats) since(before redisStats) redisStats {
	return redisStats{scripts: s.scripts - before.scripts, scriptUsec: s.scriptUsec - before.scriptUsec,
		reads: s.reads - before.reads, err: errors.Join(s.err, before.err)}
}

// add sums two deltas.
func (s redisStats) add(d redisStats) redisStats {
	return redisStats{scripts: s.scripts + d.scripts, scriptUsec: s.scriptUsec + d.scriptUsec,
		reads: s.reads + d.reads, err: errors.Join(s.err, d.err)}
}

// stats reads the server's counters; zero for a nil p. The reading itself
// is one round trip (INFO), counted in reads.
func (p *redisProc) stats(ctx context.Context) redisStats {
	if p == nil {
		return redisStats{}
	}
	ictx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	info, err := p.client.Info(ictx, "commandstats", "stats").Result()
	if err != nil {
		return redisStats{err: err}
	}
	var s redisStats
	for _, line := range strings.Split(info, "\n") {
		line = strings.TrimSpace(line)
		if v, ok := strings.CutPrefix(line, "total_reads_processed:"); ok {
			s.reads, err = strconv.ParseInt(v, 10, 64)
			if err != nil {
				return redisStats{err: fmt.Errorf("stats %q: %w", line, err)}
			}
			continue
		}
		for _, cmd := range []string{"cmdstat_evalsha:", "cmdstat_eval:"} {
			rest, ok := strings.CutPrefix(line, cmd)
			if !ok {
				continue
			}
			for _, kv := range strings.Split(rest, ",") {
				k, v, _ := strings.Cut(kv, "=")
				var dst *int64
				switch k {
				case "calls":
					dst = &s.scripts
				case "usec":
					dst = &s.scriptUsec
				default:
					continue
				}
				c, err := strconv.ParseInt(v, 10, 64)
				if err != nil {
					return redisStats{err: fmt.Errorf("commandstats %q: %w", line, err)}
				}
				*dst += c
			}
		}
	}
	return s
}

// stop closes the client and kills and reaps the server; safe to repeat.
func (p *redisProc) stop() {
	p.once.Do(func() {
		p.client.Close()
		_ = p.cmd.Process.Kill()
		<-p.done
		os.RemoveAll(filepath.Dir(p.sock))
	})
}

// lockedBuffer collects a child's output, written from exec's copying
// goroutines.
type lockedBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *lockedBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *lockedBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}

// startProfile starts a CPU profile of this process (vmcp and the load
// client; the client's goroutines carry the label bench=client) for the
// first round's measured phase of target, written to <base>.<target>, and
// returns its stop. No-op when base is empty or for later rounds.
func startProfile(base, target string, round int) (stop func()) {
	if base == "" || round != 0 {
		return func() {}
	}
	file := base + "." + target
	f, err := os.Create(file)
	if err != nil {
		slog.Error("cpu profile", "error", err)
		return func() {}
	}
	if err := pprof.StartCPUProfile(f); err != nil {
		slog.Error("cpu profile", "error", err)
		f.Close()
		return func() {}
	}
	return func() {
		pprof.StopCPUProfile()
		f.Close()
		slog.Info("wrote CPU profile", "file", file, "phase", "tools/call, limits "+target)
	}
}
