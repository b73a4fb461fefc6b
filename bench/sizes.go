package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"math"
	"math/rand/v2"
	"os/exec"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"sync/atomic"
	"text/tabwriter"
	"time"
)

// The -sizes mode measures tools/call of the demo backend's echo tool with
// arguments of several sizes (echoed back, so the answer is as large as the
// argument) at several connection counts against four targets:
//
//	direct      the demo backend itself
//	proxy       a bare httputil.ReverseProxy in front of it
//	vmcp        vmcp in front of it
//	vmcp+redis  vmcp with Redis rate limits on (a bucket that never rejects)
//
// all in one run of interleaved rounds: every round measures every (size,
// conns) cell on every target, the targets of a cell in an order rotated by
// one each round (and across the cells of a round), so that drift of a
// shared machine falls on every target alike.
//
// CPU per call. The proxy and both vmcps run as child processes (this
// binary again, see child.go), like the backend and redis-server; the load
// client is the only thing in this process. The CPU of a target is read
// from /proc/<pid>/stat of its own process around each measured phase, so
// it holds neither the client's share (which grows with the size of the
// answers it decodes and checks) nor the backend's. "CPU/call" of the proxy
// and of vmcp is that process's CPU over the calls measured; for
// vmcp+redis it is vmcp's plus redis-server's (the cost of the check is in
// both). The backend's and the client's CPU per call are in the detailed
// table. Ticks of /proc are 10 ms: over a phase of a few seconds at one
// core that is a resolution well under 1%.

// sizesIssueTargets are the targets of issue 11 item 6, printed next to the
// figures.
const (
	targetVMCPOverProxy  = 0.9  // req/s, vmcp / proxy, at 16 connections
	targetRedisOverProxy = 0.85 // req/s, vmcp+redis / proxy, at 16 connections
	targetCPUOverProxy   = 1.3  // CPU per call, vmcp / proxy, at most
	targetP50OverProxy   = 1.2  // p50 added over direct at 1 connection, vmcp / proxy, at most
	targetThroughputConn = 16   // the connection count the throughput targets are for
)

// sizesRedisCheckTimeout is rateLimiting.checkTimeout of the vmcp+redis
// target (see runSizes).
const sizesRedisCheckTimeout = "10s"

// defaultSizes are the argument sizes of -sizes: 100 B, 8 KiB, 64 KiB.
const defaultSizes = "100,8192,65536"

// sizesTarget is one endpoint of the -sizes mode.
type sizesTarget struct {
	name     string
	url      string
	tool     string
	proc     *backend      // the proxy or vmcp child; nil for direct
	failOpen *atomic.Int64 // fail-open warnings the vmcp child logged
	sessions []*session
	ops      map[int]op  // tools/call of echo, by argument size
	answer   map[int]int // bytes of the JSON-RPC message answering one call, by size
}

// sizesKey names one measured cell of one target.
type sizesKey struct {
	size, conns int
	target      string
}

// sizesCell is what was measured on one target in one (size, conns) cell,
// summed over the rounds.
type sizesCell struct {
	total    result    // client and backend CPU in total.cpu
	rounds   []float64 // req/s of each round
	middle   time.Duration
	redisCPU time.Duration
	redis    redisStats
}

func runSizes(ctx context.Context, opts options, out io.Writer) (err error) {
	maxConns := slices.Max(opts.conns)
	be, err := launchDemo(ctx, opts.tools)
	if err != nil {
		return err
	}
	defer be.stop()

	var rs *redisProc
	redisNote := "vmcp+redis: SKIPPED, redis-server is not on PATH"
	if bin, lerr := exec.LookPath("redis-server"); lerr == nil {
		rs, err = startRedisProc(ctx, bin)
		if err != nil {
			return err
		}
		defer rs.stop()
		redisNote = fmt.Sprintf("vmcp+redis: rateLimiting.shared %s (never rejects), checkTimeout %s (no call fails open and skips the check), in %s on %s (TCP, persistence off)",
			rateLimitBucket, sizesRedisCheckTimeout, rs.version, rs.addr)
	}

	// The targets' processes. Each child is stopped (SIGTERM, then
	// SIGKILL) when the run ends, whatever happens.
	targets := []*sizesTarget{{name: "direct", url: be.url, tool: "echo"}}
	defer func() {
		for _, t := range targets {
			if t.proc != nil {
				t.proc.stop()
			}
		}
	}()
	profileEnv := func(name string) []string {
		if opts.cpuProfile == "" {
			return nil
		}
		return []string{childProfileEnv + "=" + opts.cpuProfile + "." + strings.ReplaceAll(name, "+", "-")}
	}
	type childSpec struct{ kind, name, extra string }
	children := []childSpec{{"proxy", "proxy", ""}, {"vmcp", "vmcp", ""}}
	if rs != nil {
		// checkTimeout: the default 50 ms is exceeded on an oversubscribed
		// machine (64 KiB at 16 conns on 2 busy cores: p50 well over
		// 50 ms), and a check that times out fails open: that call skips
		// Redis and the target looks cheaper than it is. With a bound no
		// check reaches, every measured call pays the whole check; the
		// run still fails if Redis ran fewer scripts than calls measured.
		children = append(children, childSpec{"vmcp", "vmcp+redis",
			"rateLimiting:\n  shared: " + rateLimitBucket + "\n  checkTimeout: " + sizesRedisCheckTimeout + "\n" +
				fmt.Sprintf("redis: {address: %q}\n", rs.addr)})
	}
	for _, c := range children {
		env := append([]string{childBackendEnv + "=" + be.url, childConnsEnv + "=" + strconv.Itoa(maxConns),
			childExtraEnv + "=" + c.extra}, profileEnv(c.name)...)
		t := &sizesTarget{name: c.name, tool: "echo", failOpen: &atomic.Int64{}}
		if c.kind == "vmcp" {
			t.tool = backendName + "_echo"
		}
		t.proc, err = startSelfChild(c.kind, c.name, env, t.failOpen)
		if err != nil {
			return err
		}
		t.url = t.proc.url
		targets = append(targets, t)
	}

	hc := newHTTPClient(maxConns * len(targets))
	defer hc.CloseIdleConnections()
	defer func() {
		for _, t := range targets {
			for _, s := range t.sessions {
				s.close()
			}
		}
	}()
	payloads := make(map[int]string, len(opts.sizes))
	for _, size := range opts.sizes {
		payloads[size] = payloadText(size, uint64(size))
	}
	for _, t := range targets {
		for range maxConns {
			s, err := openSession(ctx, hc, t.url)
			if err != nil {
				return fmt.Errorf("%s: open session: %w", t.name, err)
			}
			t.sessions = append(t.sessions, s)
		}
		t.ops, t.answer = make(map[int]op), make(map[int]int)
		for _, size := range opts.sizes {
			t.ops[size] = echoOp(t.tool, payloads[size])
			// One checked call first, so that a target that does not
			// relay the echo fails here, before anything is measured.
			n, err := answerSize(ctx, t.sessions[0], t.ops[size])
			if err != nil {
				return fmt.Errorf("%s: tools/call with %d bytes: %w", t.name, size, err)
			}
			t.answer[size] = n
		}
	}
	slog.Info("sizes targets up", "targets", len(targets), "sizes", opts.sizes, "conns", opts.conns, "rounds", opts.rounds,
		"phases", len(targets)*len(opts.sizes)*len(opts.conns)*opts.rounds, "each", opts.warm+opts.dur)

	loadStart := loadAvg()
	cells := make(map[sizesKey]*sizesCell)
	pid := be.cmd.Process.Pid
	for round := range opts.rounds {
		k := 0 // position of the cell in the round
		for _, size := range opts.sizes {
			for _, n := range opts.conns {
				for _, t := range rotated(targets, round+k) {
					slog.Info("tools/call", "target", t.name, "bytes", size, "conns", n, "round", round+1)
					var use cpuUse
					var middle, redisUse time.Duration
					var redisDelta redisStats
					isRedis := t.name == "vmcp+redis"
					r := closedLoop(ctx, t.sessions[:n], t.ops[size], opts.warm, opts.dur, func() func() {
						var sBefore redisStats
						if isRedis {
							sBefore = rs.stats(ctx)
						}
						before, mBefore, rBefore := takeCPU(pid), t.proc.cpu(), rs.cpu()
						return func() {
							use, middle, redisUse = takeCPU(pid).since(before), t.proc.cpu()-mBefore, rs.cpu()-rBefore
							if isRedis {
								redisDelta = rs.stats(ctx).since(sBefore)
							}
						}
					})
					r.target = t.name
					key := sizesKey{size, n, t.name}
					c := cells[key]
					if c == nil {
						c = &sizesCell{}
						cells[key] = c
					}
					c.rounds = append(c.rounds, r.throughput())
					c.total = addResults(c.total, r, use)
					c.middle += middle
					if isRedis {
						c.redisCPU += redisUse
						c.redis = c.redis.add(redisDelta)
					}
					if ctx.Err() != nil {
						return ctx.Err()
					}
				}
				k++
			}
		}
	}

	printSizesReport(out, opts, targets, cells, redisNote, loadStart)

	// A run with errors, fail-open calls or calls Redis did not check is
	// not valid: its numbers are printed, but the command fails.
	var invalid error
	for _, t := range targets {
		if t.failOpen != nil && t.failOpen.Load() > 0 {
			invalid = errors.Join(invalid, fmt.Errorf("%s: %d fail-open warnings: calls went through unchecked", t.name, t.failOpen.Load()))
		}
		for _, size := range opts.sizes {
			for _, n := range opts.conns {
				c := cells[sizesKey{size, n, t.name}]
				if c == nil {
					continue
				}
				if c.total.errors > 0 {
					invalid = errors.Join(invalid, fmt.Errorf("%s, %d bytes, %d conns: %d errors (first: %v)", t.name, size, n, c.total.errors, c.total.firstErr))
				}
				if t.name == "vmcp+redis" && (c.redis.err != nil || c.redis.scripts < int64(c.total.count)) {
					invalid = errors.Join(invalid, fmt.Errorf("%s, %d bytes, %d conns: redis ran the script %d times for %d measured calls (%v): the limits were not checked",
						t.name, size, n, c.redis.scripts, c.total.count, c.redis.err))
				}
			}
		}
	}
	if invalid != nil {
		return fmt.Errorf("run is not valid: %w", invalid)
	}
	return nil
}

// cpu is the CPU time the child has used so far; 0 for nil (the direct
// target has no middleman).
func (b *backend) cpu() time.Duration {
	if b == nil {
		return 0
	}
	return procCPU(b.cmd.Process.Pid)
}

// payloadWords are the words of the echoed text: common English and the
// vocabulary of the files, pages and query results agents read.
var payloadWords = strings.Fields(`
the of and to in is that for it as with was on be by at this from or have an are which not but had
they you were their one all we can her has there been if more when will would who so no out up into
its than them only other new some could time these two may then do first any my now such like our
over man me even most made after also did many before must through back years where much your way
well down should because each just those people how too little state good very make world still
own see men work long get here between both life being under never day same another know while last
might us great old year off come since against go came right used take three request response server
client session tool backend gateway latency throughput connection header payload result error status
record field value index query table column row schema version release config cluster node replica
buffer stream event message channel token account user file page document section paragraph summary
report invoice order customer product price total amount balance date region country city street
function method parameter argument return string number boolean array object null undefined module
package import export build test deploy commit branch merge review issue ticket sprint milestone
`)

// payloadText returns n bytes of ASCII text made of payloadWords in
// sentences, with numbers, punctuation and now and then characters JSON
// must escape (quotes, backslashes, newlines, tabs) and ones Go's encoder
// escapes too (<, >, &), from a generator seeded with seed: the same text
// for every target, not one repeated byte that a compressor or a special
// case could flatter.
func payloadText(n int, seed uint64) string {
	r := rand.New(rand.NewPCG(seed, 0x9e3779b97f4a7c15))
	var b strings.Builder
	b.Grow(n + 64)
	start := true
	for b.Len() < n {
		w := payloadWords[r.IntN(len(payloadWords))]
		switch x := r.IntN(1000); {
		case x < 30:
			w = strconv.Itoa(r.IntN(100000))
		case x < 36:
			w = `"` + w + `"`
		case x < 39:
			w = `C:\data\` + w + `.txt`
		case x < 42:
			w = "<" + w + ">"
		case x < 44:
			w = w + " & " + payloadWords[r.IntN(len(payloadWords))]
		}
		if start {
			w = strings.ToUpper(w[:1]) + w[1:]
			start = false
		}
		b.WriteString(w)
		switch x := r.IntN(100); {
		case x < 7:
			b.WriteString(". ")
			start = true
		case x < 8:
			b.WriteString(".\n")
			start = true
		case x < 9:
			b.WriteString(":\n\t")
		case x < 13:
			b.WriteString(", ")
		default:
			b.WriteByte(' ')
		}
	}
	return b.String()[:n]
}

// echoOp is tools/call of the echo tool named tool with text as its
// argument, encoded once. The result must hold exactly text: its length is
// checked first (the error names both lengths), then its bytes, so a relay
// that cuts, pads or mangles the answer fails the run instead of looking
// fast.
func echoOp(tool, text string) op {
	params, err := json.Marshal(map[string]any{"name": tool, "arguments": map[string]any{"text": text}})
	if err != nil {
		panic(err) // a string always marshals
	}
	return op{
		name:      "tools/call",
		method:    "tools/call",
		rawParams: params,
		validate: func(res json.RawMessage) error {
			var r struct {
				IsError bool `json:"isError"`
				Content []struct {
					Type string `json:"type"`
					Text string `json:"text"`
				} `json:"content"`
			}
			if err := json.Unmarshal(res, &r); err != nil {
				return err
			}
			if r.IsError || len(r.Content) != 1 || r.Content[0].Type != "text" {
				return fmt.Errorf("unexpected echo result: %s", truncate(res, 200))
			}
			if got := r.Content[0].Text; len(got) != len(text) {
				return fmt.Errorf("echo answered %d bytes of text, sent %d", len(got), len(text))
			} else if got != text {
				return fmt.Errorf("echo answered %d bytes of text that differ from the %d sent", len(got), len(text))
			}
			return nil
		},
	}
}

// answerSize makes one call of o on s, checks it, and returns the size of
// the JSON-RPC message that answered it.
func answerSize(ctx context.Context, s *session, o op) (int, error) {
	body, id := s.requestRaw(o.method, o.rawParams)
	ex, err := s.post(ctx, body)
	if err != nil {
		return 0, err
	}
	res, err := check(ex, id)
	if err != nil {
		return 0, err
	}
	if err := o.validate(res); err != nil {
		return 0, err
	}
	return len(ex.message), nil
}

// fmtSize prints a byte count as 100B, 8KiB, 64KiB.
func fmtSize(n int) string {
	switch {
	case n >= 1<<20 && n%(1<<20) == 0:
		return fmt.Sprintf("%dMiB", n>>20)
	case n >= 1<<10 && n%(1<<10) == 0:
		return fmt.Sprintf("%dKiB", n>>10)
	default:
		return fmt.Sprintf("%dB", n)
	}
}

// fmtRatio prints a ratio, or n/a.
func fmtRatio(v float64) string {
	if math.IsNaN(v) || math.IsInf(v, 0) {
		return "n/a"
	}
	return fmt.Sprintf("%.2f", v)
}

// verdict prints v with its target: at least (min) or at most (!min) goal.
func verdict(v, goal float64, atLeast bool) string {
	if math.IsNaN(v) || math.IsInf(v, 0) {
		return "n/a"
	}
	ok := v >= goal
	op := ">="
	if !atLeast {
		ok, op = v <= goal, "<="
	}
	word := "ok"
	if !ok {
		word = "MISS"
	}
	return fmt.Sprintf("%.2f [%s%.2g %s]", v, op, goal, word)
}

func printSizesReport(out io.Writer, opts options, targets []*sizesTarget, cells map[sizesKey]*sizesCell, redisNote, loadStart string) {
	fmt.Fprintf(out, "vmcp bench -sizes: %s, GOMAXPROCS=%d, NumCPU=%d, -d %s per phase, warm-up %s, %d interleaved rounds, conns %v, argument sizes %v\n",
		runtime.Version(), runtime.GOMAXPROCS(0), runtime.NumCPU(), opts.dur, opts.warm, opts.rounds, opts.conns, opts.sizes)
	fmt.Fprintf(out, "vmcp tree: %s\n", opts.tree)
	fmt.Fprintf(out, "tools/call of the demo backend's echo with N bytes of text echoed back; every answer checked to hold exactly the text sent\n")
	fmt.Fprintf(out, "%s\n", redisNote)
	fmt.Fprintf(out, "load average at start %s, at end %s\n", loadStart, loadAvg())
	fmt.Fprintf(out, "CPU/call: CPU of the target's own process (read from /proc/<pid>/stat around each measured phase; proxy and vmcp run as separate processes, not in the load client's) over the calls measured; vmcp+redis adds redis-server's\n\n")

	get := func(size, n int, name string) *sizesCell { return cells[sizesKey{size, n, name}] }
	tput := func(c *sizesCell) float64 {
		if c == nil {
			return math.NaN()
		}
		return c.total.throughput()
	}
	cpuOf := func(c *sizesCell) float64 {
		if c == nil {
			return math.NaN()
		}
		return c.total.perCall(c.middle + c.redisCPU)
	}
	fmtReq := func(v float64) string {
		if math.IsNaN(v) {
			return "-"
		}
		return strconv.FormatFloat(v, 'f', 0, 64)
	}

	fmt.Fprintf(out, "tools/call, targets of issue 11 item 6 in brackets (req/s ratios at %d conns; CPU at every size and conns):\n", targetThroughputConn)
	tw := tabwriter.NewWriter(out, 0, 0, 2, ' ', tabwriter.AlignRight)
	fmt.Fprintln(tw, "size\tconns\treq/s direct\tproxy\tvmcp\tvmcp+redis\tvmcp/proxy\tvmcp+redis/proxy\tCPU/call proxy\tvmcp\tvmcp+redis\tCPU vmcp/proxy\t")
	for _, size := range opts.sizes {
		for _, n := range opts.conns {
			d, p, v, vr := get(size, n, "direct"), get(size, n, "proxy"), get(size, n, "vmcp"), get(size, n, "vmcp+redis")
			vRatio, rRatio := tput(v)/tput(p), tput(vr)/tput(p)
			vCell, rCell := fmtRatio(vRatio), fmtRatio(rRatio)
			if n == targetThroughputConn {
				vCell, rCell = verdict(vRatio, targetVMCPOverProxy, true), verdict(rRatio, targetRedisOverProxy, true)
			}
			if vr == nil {
				rCell = "-"
			}
			fmt.Fprintf(tw, "%s\t%d\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t\n", fmtSize(size), n,
				fmtReq(tput(d)), fmtReq(tput(p)), fmtReq(tput(v)), fmtReq(tput(vr)), vCell, rCell,
				fmtNs(cpuOf(p)), fmtNs(cpuOf(v)), fmtNs(cpuOf(vr)), verdict(cpuOf(v)/cpuOf(p), targetCPUOverProxy, false))
		}
	}
	tw.Flush()

	if slices.Contains(opts.conns, 1) {
		fmt.Fprintln(out, "\np50 added over direct at 1 connection (all rounds' samples):")
		tw = tabwriter.NewWriter(out, 0, 0, 2, ' ', tabwriter.AlignRight)
		fmt.Fprintln(tw, "size\tp50 direct\tadded: proxy\tvmcp\tvmcp+redis\tvmcp/proxy\tvmcp+redis/proxy\t")
		for _, size := range opts.sizes {
			d, p, v, vr := get(size, 1, "direct"), get(size, 1, "proxy"), get(size, 1, "vmcp"), get(size, 1, "vmcp+redis")
			if d == nil || p == nil || v == nil {
				continue
			}
			base := d.total.percentile(0.5)
			added := func(c *sizesCell) (time.Duration, string) {
				if c == nil {
					return 0, "-"
				}
				a := c.total.percentile(0.5) - base
				return a, fmtSigned(a)
			}
			pa, ps := added(p)
			va, vs := added(v)
			ra, rsx := added(vr)
			ratio := func(a time.Duration) float64 {
				if pa <= 0 {
					return math.NaN()
				}
				return float64(a) / float64(pa)
			}
			rr := "-"
			if x := ratio(ra); vr != nil && !math.IsNaN(x) {
				rr = fmt.Sprintf("%.2f", x)
			} else if vr != nil {
				rr = "n/a"
			}
			fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\t%s\t\n", fmtSize(size), fmtDur(base), ps, vs, rsx,
				verdict(ratio(va), targetP50OverProxy, false), rr)
		}
		tw.Flush()
		fmt.Fprintln(out, "(n/a: the proxy's p50 was not above direct's, so there is nothing to divide by; read the added times themselves)")
	}

	fmt.Fprintln(out, "\ndetails (per target; CPU per call of each process; answer = bytes of the JSON-RPC message answering one call):")
	tw = tabwriter.NewWriter(out, 0, 0, 2, ' ', tabwriter.AlignRight)
	fmt.Fprintln(tw, "size\tconns\ttarget\treq/s\tper round\tp50\tp99\terrors\tanswer\ttarget CPU\tbackend CPU\tredis CPU\tclient CPU\tmachine busy\t")
	for _, size := range opts.sizes {
		for _, n := range opts.conns {
			for _, t := range targets {
				c := get(size, n, t.name)
				if c == nil {
					continue
				}
				per := make([]string, len(c.rounds))
				for i, x := range c.rounds {
					per[i] = strconv.FormatFloat(x, 'f', 0, 64)
				}
				mid, redis := "-", "-"
				if t.proc != nil {
					mid = fmtNs(c.total.perCall(c.middle))
				}
				if t.name == "vmcp+redis" {
					redis = fmtNs(c.total.perCall(c.redisCPU))
				}
				fmt.Fprintf(tw, "%s\t%d\t%s\t%.0f\t%s\t%s\t%s\t%d\t%d\t%s\t%s\t%s\t%s\t%.0f%%\t\n",
					fmtSize(size), n, t.name, c.total.throughput(), strings.Join(per, " "),
					fmtDur(c.total.percentile(0.5)), fmtDur(c.total.percentile(0.99)), c.total.errors, t.answer[size],
					mid, fmtNs(c.total.perCall(c.total.cpu.backend)), redis, fmtNs(c.total.perCall(c.total.cpu.harness)), 100*c.total.cpu.busy)
			}
		}
	}
	tw.Flush()
	fmt.Fprintln(out, "(target CPU = the proxy's or vmcp's own process; backend = the demo backend; client = this process, the load client alone;",
		"machine busy = all CPUs, everything on the machine. On a small machine every process shares the CPUs, so req/s is bounded by the sum.)")
}
