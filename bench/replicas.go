package main

import (
	"context"
	"encoding/csv"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"syscall"
	"text/tabwriter"
	"time"
)

// The -replicas mode measures one client load, -c connections (default
// 16) with an MCP session each in a closed loop of tools/call of the demo
// backend's echo (5 bytes), through HAProxy balancing round robin with no
// affinity, against
//
//	3 replicas  three vmcp processes with sessions.store: redis
//	1 replica   one vmcp process with sessions.store: redis
//	1 memory    one vmcp process with sessions.store: memory
//
// all behind the same HAProxy process (a frontend and a backend each), so
// every target has the same hop. Interleaved rounds, the targets' order
// rotated each round. Every vmcp, HAProxy, redis-server and the demo
// backend are processes of their own; the CPU per call of a target is the
// sum of its vmcps', HAProxy's and redis-server's, from /proc/<pid>/stat
// around each measured phase. The replicas run on the same machine and
// share its CPUs: this measures what spreading sessions over replicas
// costs, not what more machines would buy.

// replicasCount is how many vmcp replicas the fleet target runs.
const replicasCount = 3

// replicasTarget is one target of the -replicas mode.
type replicasTarget struct {
	name     string
	backend  string // its backend in haproxy.cfg
	vmcps    []*childVMCP
	url      string // its frontend in HAProxy
	sessions []*session
	total    result // backend and client CPU in total.cpu
	rounds   []float64
	vmcpCPU  []time.Duration // per vmcp
	lbCPU    time.Duration
	redisCPU time.Duration
	redis    redisCounts
}

func (t *replicasTarget) vmcpSum() time.Duration {
	var s time.Duration
	for _, d := range t.vmcpCPU {
		s += d
	}
	return s
}

func runReplicas(ctx context.Context, opts options, out io.Writer) (err error) {
	n := opts.conns[len(opts.conns)-1]
	redisBin, err := exec.LookPath("redis-server")
	if err != nil {
		return errors.New("-replicas needs redis-server on PATH")
	}
	lbBin, err := exec.LookPath("haproxy")
	if err != nil {
		return errors.New("-replicas needs haproxy on PATH")
	}
	be, err := launchDemo(ctx, opts.tools)
	if err != nil {
		return err
	}
	defer be.stop()
	rs, err := startRedisProc(ctx, redisBin)
	if err != nil {
		return err
	}
	defer rs.stop()

	redisCfg := redisSessionsConfig(rs.addr)
	specs := []struct {
		name, backend, extra string
		replicas             int
	}{
		{fmt.Sprintf("%d replicas", replicasCount), "fleet", redisCfg, replicasCount},
		{"1 replica", "single", redisCfg, 1},
		{"1 memory", "memory", "sessions: {store: memory}\n", 1},
	}
	var targets []*replicasTarget
	defer func() {
		for _, t := range targets {
			for _, v := range t.vmcps {
				v.proc.stop()
			}
		}
	}()
	for _, sp := range specs {
		t := &replicasTarget{name: sp.name, backend: sp.backend}
		targets = append(targets, t)
		for i := range sp.replicas {
			name := fmt.Sprintf("%s-r%d", sp.backend, i)
			v, err := startVMCPChild(name, be.url, sp.extra, profileFile(opts.cpuProfile, name))
			if err != nil {
				return err
			}
			t.vmcps = append(t.vmcps, v)
		}
		t.vmcpCPU = make([]time.Duration, len(t.vmcps))
	}
	lb, err := startBenchHAProxy(lbBin, targets)
	if err != nil {
		return err
	}
	defer lb.stop()

	hc := newHTTPClient(n * len(targets))
	defer hc.CloseIdleConnections()
	defer func() {
		for _, t := range targets {
			for _, s := range t.sessions {
				s.close()
			}
		}
	}()
	call := callOp(backendName + "_echo")
	for _, t := range targets {
		for range n {
			s, err := openSession(ctx, hc, t.url)
			if err != nil {
				return fmt.Errorf("%s: open session: %w", t.name, err)
			}
			t.sessions = append(t.sessions, s)
			// One checked call per replica, one after another: with
			// round robin and nothing else running, each replica gets
			// one, adopts the session and learns its backend session
			// before anything is measured.
			for range len(t.vmcps) {
				if _, err := s.do(ctx, call); err != nil {
					return fmt.Errorf("%s: first tools/call: %w", t.name, err)
				}
			}
		}
	}
	inRedis, err := rs.client.ZCard(ctx, "vmcp:{"+vmcpName+"}:sessions").Result()
	if err != nil {
		return fmt.Errorf("count the sessions in redis: %w", err)
	}
	if want := int64(2 * n); inRedis != want {
		return fmt.Errorf("redis holds %d sessions, want %d (the two redis targets'): the store is not in use as expected", inRedis, want)
	}
	lbBefore, err := lb.requests()
	if err != nil {
		return err
	}
	slog.Info("replicas targets up", "conns", n, "rounds", opts.rounds, "sessions in redis", inRedis,
		"phases", len(targets)*opts.rounds, "each", opts.warm+opts.dur)

	loadStart := loadAvg()
	pid, lbPID := be.cmd.Process.Pid, lb.cmd.Process.Pid
	for round := range opts.rounds {
		for _, t := range rotated(targets, round) {
			slog.Info("tools/call", "target", t.name, "conns", n, "round", round+1)
			var use cpuUse
			var lbUse, redisUse time.Duration
			vmcpUse := make([]time.Duration, len(t.vmcps))
			var counts redisCounts
			r := closedLoop(ctx, t.sessions, call, opts.warm, opts.dur, func() func() {
				cBefore := rs.counts(ctx)
				vBefore := make([]time.Duration, len(t.vmcps))
				for i, v := range t.vmcps {
					vBefore[i] = v.proc.cpu()
				}
				before, lBefore, rBefore := takeCPU(pid), procCPU(lbPID), rs.cpu()
				return func() {
					use, lbUse, redisUse = takeCPU(pid).since(before), procCPU(lbPID)-lBefore, rs.cpu()-rBefore
					for i, v := range t.vmcps {
						vmcpUse[i] = v.proc.cpu() - vBefore[i]
					}
					counts = rs.counts(ctx).since(cBefore)
				}
			})
			r.target = t.name
			t.rounds = append(t.rounds, r.throughput())
			t.total = addResults(t.total, r, use)
			t.lbCPU += lbUse
			t.redisCPU += redisUse
			for i, d := range vmcpUse {
				t.vmcpCPU[i] += d
			}
			t.redis = t.redis.add(counts)
			if ctx.Err() != nil {
				return ctx.Err()
			}
		}
	}
	lbAfter, err := lb.requests()
	if err != nil {
		return err
	}

	printReplicasReport(out, opts, n, rs, lb, targets, lbBefore, lbAfter, loadStart)

	var invalid error
	for _, t := range targets {
		for _, v := range t.vmcps {
			if w := v.warnings.Load(); w > 0 {
				invalid = errors.Join(invalid, fmt.Errorf("%s: vmcp logged %d warnings or errors (on stderr above)", v.name, w))
			}
		}
		if t.total.errors > 0 {
			invalid = errors.Join(invalid, fmt.Errorf("%s: %d errors (first: %v)", t.name, t.total.errors, t.total.firstErr))
		}
	}
	if invalid != nil {
		return fmt.Errorf("run is not valid: %w", invalid)
	}
	return nil
}

func printReplicasReport(out io.Writer, opts options, n int, rs *redisProc, lb *benchHAProxy, targets []*replicasTarget,
	lbBefore, lbAfter map[string]int64, loadStart string) {
	fmt.Fprintf(out, "vmcp bench -replicas: %s, GOMAXPROCS=%d, NumCPU=%d, -d %s per phase, warm-up %s, %d interleaved rounds, %d connections (one MCP session each)\n",
		runtime.Version(), runtime.GOMAXPROCS(0), runtime.NumCPU(), opts.dur, opts.warm, opts.rounds, n)
	fmt.Fprintf(out, "vmcp tree: %s\n", opts.tree)
	fmt.Fprintf(out, "tools/call of the demo backend's echo (5 bytes), every target behind the same %s (its own frontend and backend each; balance roundrobin, no affinity, HTTP keep-alive both sides, no health checks)\n", lb.version)
	fmt.Fprintf(out, "sessions.store redis (ttl %s) in %s on %s for %q and %q; %q is one vmcp with sessions.store memory\n",
		sessionsTTL, rs.version, rs.addr, targets[0].name, targets[1].name, targets[2].name)
	fmt.Fprintf(out, "NOTE: NumCPU=%d. The %d replicas, HAProxy, redis-server, the backend and the load client all share these CPUs: more replicas add no CPU here, so this measures what spreading sessions over replicas costs, not what it buys\n",
		runtime.NumCPU(), replicasCount)
	fmt.Fprintf(out, "load average at start %s, at end %s\n\n", loadStart, loadAvg())

	all := func(t *replicasTarget) time.Duration { return t.vmcpSum() + t.lbCPU + t.redisCPU }

	tw := tabwriter.NewWriter(out, 0, 0, 2, ' ', tabwriter.AlignRight)
	fmt.Fprintln(tw, "target\treq/s\tper round\tp50\tp99\terrors\tCPU/call: vmcp (sum)\tHAProxy\tredis-server\tall three\tbackend\tclient\tmachine busy\t")
	for _, t := range targets {
		per := make([]string, len(t.rounds))
		for i, x := range t.rounds {
			per[i] = strconv.FormatFloat(x, 'f', 0, 64)
		}
		redisCPU := fmtNs(t.total.perCall(t.redisCPU))
		if t.redis.total() == 0 && t.redisCPU == 0 {
			redisCPU = "-"
		}
		fmt.Fprintf(tw, "%s\t%.0f\t%s\t%s\t%s\t%d\t%s\t%s\t%s\t%s\t%s\t%s\t%.0f%%\t\n", t.name, t.total.throughput(), strings.Join(per, " "),
			fmtDur(t.total.percentile(0.5)), fmtDur(t.total.percentile(0.99)), t.total.errors,
			fmtNs(t.total.perCall(t.vmcpSum())), fmtNs(t.total.perCall(t.lbCPU)), redisCPU, fmtNs(t.total.perCall(all(t))),
			fmtNs(t.total.perCall(t.total.cpu.backend)), fmtNs(t.total.perCall(t.total.cpu.harness)), 100*t.total.cpu.busy)
	}
	tw.Flush()
	fmt.Fprintln(out, "(CPU/call from /proc/<pid>/stat around each measured phase over the calls measured; all three = vmcp + HAProxy + redis-server;",
		"backend = the demo backend; client = this process, the load client alone; machine busy = all CPUs.)")

	fleet, single, mem := targets[0], targets[1], targets[2]
	ratio := func(a, b float64) string { return fmtRatio(a / b) }
	fmt.Fprintf(out, "\n%s / %s: req/s %s (rounds %s), p50 %s (%s vs %s), CPU per call (vmcp + HAProxy + redis-server) %s, vmcp's alone %s\n",
		fleet.name, single.name, ratio(fleet.total.throughput(), single.total.throughput()), roundRatios(fleet.rounds, single.rounds),
		fmtSigned(fleet.total.percentile(0.5)-single.total.percentile(0.5)), fmtDur(fleet.total.percentile(0.5)), fmtDur(single.total.percentile(0.5)),
		ratio(fleet.total.perCall(all(fleet)), single.total.perCall(all(single))), ratio(fleet.total.perCall(fleet.vmcpSum()), single.total.perCall(single.vmcpSum())))
	fmt.Fprintf(out, "%s / %s: req/s %s, p50 %s, CPU per call (all) %s\n", fleet.name, mem.name,
		ratio(fleet.total.throughput(), mem.total.throughput()), fmtSigned(fleet.total.percentile(0.5)-mem.total.percentile(0.5)),
		ratio(fleet.total.perCall(all(fleet)), mem.total.perCall(all(mem))))
	fmt.Fprintf(out, "%s / %s: req/s %s, p50 %s, CPU per call (all) %s\n", single.name, mem.name,
		ratio(single.total.throughput(), mem.total.throughput()), fmtSigned(single.total.percentile(0.5)-mem.total.percentile(0.5)),
		ratio(single.total.perCall(all(single)), mem.total.perCall(all(mem))))

	fmt.Fprintf(out, "\nspread of the %s (over the whole run, warm-ups included: requests per server from HAProxy's stats; CPU of the measured phases):\n", fleet.name)
	for i, v := range fleet.vmcps {
		srv := fmt.Sprintf("r%d", i)
		fmt.Fprintf(out, "  %s: %d requests, %s CPU\n", v.name, lbAfter[fleet.backend+"/"+srv]-lbBefore[fleet.backend+"/"+srv], fmtDur(fleet.vmcpCPU[i]))
	}

	fmt.Fprintln(out, "\nRedis commands during the measured phases (INFO commandstats, the bench's own INFO left out; reads = round trips, a pipeline is one):")
	for _, t := range targets {
		fmt.Fprintf(out, "  %-10s %d calls: %d commands (%.4f/call), %d reads (%.4f/call): %s\n", t.name, t.total.count,
			t.redis.total(), float64(t.redis.total())/float64(max(t.total.count, 1)),
			t.redis.reads, float64(t.redis.reads)/float64(max(t.total.count, 1)), t.redis.describe(t.total.count))
	}
	fmt.Fprintln(out, "(a replica that holds a session in its cache should need no round trip per call: only a batched touch per session at most every min(ttl/10, 1m))")
}

// benchHAProxy is the HAProxy child of the -replicas mode.
type benchHAProxy struct {
	cmd      *exec.Cmd
	done     chan struct{}
	dir      string
	statsURL string
	version  string
	logs     lockedBuffer
}

// benchHAProxyConfig is the balancer: round robin, no stickiness (no
// cookie, no stick table), keep-alive on both sides (HAProxy's default:
// each request is balanced on its own), no health checks and no logs (the
// bench does not stop replicas, and neither would add to what is
// measured). One frontend and backend per target.
const benchHAProxyConfig = `global
  maxconn 4096

defaults
  mode http
  timeout connect 2s
  timeout client 1m
  timeout server 1m
  timeout http-request 30s
  timeout queue 10s
%s
frontend stats
  bind 127.0.0.1:%d
  stats enable
  stats uri /stats
`

// startBenchHAProxy writes haproxy.cfg for targets and runs haproxy; it
// sets each target's url.
func startBenchHAProxy(bin string, targets []*replicasTarget) (*benchHAProxy, error) {
	dir, err := os.MkdirTemp("", "vmcp-bench-haproxy-")
	if err != nil {
		return nil, err
	}
	var lastErr error
	for range 3 { // a free port can be taken before haproxy binds it
		var sections strings.Builder
		urls := make([]string, len(targets))
		for i, t := range targets {
			port, err := freePort()
			if err != nil {
				return nil, err
			}
			fmt.Fprintf(&sections, "\nfrontend %s\n  bind 127.0.0.1:%d\n  default_backend %s\n\nbackend %s\n  balance roundrobin\n",
				t.backend, port, t.backend, t.backend)
			for j, v := range t.vmcps {
				u, err := url.Parse(v.proc.url)
				if err != nil {
					return nil, err
				}
				fmt.Fprintf(&sections, "  server r%d %s\n", j, u.Host)
			}
			first, err := url.Parse(t.vmcps[0].proc.url)
			if err != nil {
				return nil, err
			}
			urls[i] = "http://127.0.0.1:" + strconv.Itoa(port) + first.Path
		}
		statsPort, err := freePort()
		if err != nil {
			return nil, err
		}
		cfg := filepath.Join(dir, "haproxy.cfg")
		if err := os.WriteFile(cfg, fmt.Appendf(nil, benchHAProxyConfig, sections.String(), statsPort), 0o600); err != nil {
			return nil, err
		}
		h := &benchHAProxy{dir: dir, statsURL: "http://127.0.0.1:" + strconv.Itoa(statsPort) + "/stats;csv"}
		if lastErr = h.start(bin, cfg); lastErr == nil {
			for i, t := range targets {
				t.url = urls[i]
			}
			h.version = "haproxy"
			if v, err := exec.Command(bin, "-v").Output(); err == nil {
				if f := strings.Fields(string(v)); len(f) >= 3 {
					h.version = "HAProxy " + f[2]
				}
			}
			return h, nil
		}
	}
	os.RemoveAll(dir)
	return nil, fmt.Errorf("haproxy: %w", lastErr)
}

func (h *benchHAProxy) start(bin, cfg string) error {
	h.cmd = exec.Command(bin, "-db", "-f", cfg)
	h.cmd.Stdout, h.cmd.Stderr = &h.logs, &h.logs
	h.cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	if err := h.cmd.Start(); err != nil {
		return err
	}
	h.done = make(chan struct{})
	go func() {
		_ = h.cmd.Wait()
		close(h.done)
	}()
	deadline := time.Now().Add(10 * time.Second)
	for {
		select {
		case <-h.done:
			return fmt.Errorf("haproxy exited: %s", h.logs.String())
		default:
		}
		if _, err := h.requests(); err == nil {
			return nil
		}
		if time.Now().After(deadline) {
			_ = h.cmd.Process.Kill()
			<-h.done
			return fmt.Errorf("haproxy's stats page does not answer within 10s: %s", h.logs.String())
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// stop kills HAProxy and removes its config; safe on nil.
func (h *benchHAProxy) stop() {
	if h == nil || h.cmd == nil || h.cmd.Process == nil {
		return
	}
	_ = h.cmd.Process.Kill()
	<-h.done
	os.RemoveAll(h.dir)
}

// requests returns the HTTP requests HAProxy has sent each server so far,
// by "backend/server" (its stats' req_tot, or stot where there is none).
func (h *benchHAProxy) requests() (map[string]int64, error) {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, h.statsURL, nil)
	if err != nil {
		return nil, err
	}
	tr := &http.Transport{Proxy: nil, DisableKeepAlives: true}
	defer tr.CloseIdleConnections()
	resp, err := (&http.Client{Transport: tr}).Do(req)
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return nil, fmt.Errorf("haproxy stats: HTTP %d", resp.StatusCode)
	}
	rows, err := csv.NewReader(resp.Body).ReadAll()
	if err != nil || len(rows) == 0 {
		return nil, fmt.Errorf("haproxy stats: %v", err)
	}
	col := map[string]int{}
	for i, name := range rows[0] {
		col[strings.TrimPrefix(strings.TrimSpace(name), "# ")] = i
	}
	px, sv := col["pxname"], col["svname"]
	count, ok := col["req_tot"]
	if !ok {
		count = col["stot"]
	}
	out := map[string]int64{}
	for _, row := range rows[1:] {
		if len(row) <= count || row[sv] == "BACKEND" || row[sv] == "FRONTEND" {
			continue
		}
		v, _ := strconv.ParseInt(row[count], 10, 64)
		out[row[px]+"/"+row[sv]] = v
	}
	return out, nil
}

// freePort returns a loopback port that was free a moment ago.
func freePort() (int, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, err
	}
	defer ln.Close()
	return ln.Addr().(*net.TCPAddr).Port, nil
}
