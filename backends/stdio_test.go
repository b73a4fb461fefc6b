package backends_test

import (
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/vmcp/vmcp/backends"
	"github.com/vmcp/vmcp/config"
)

func TestStdioEnvAndCwdReachTheChild(t *testing.T) {
	t.Parallel()
	cfg := stdioConfig(t, "files")
	cfg.Env["GREETING"] = "hello from config"
	cfg.Cwd = t.TempDir()
	m := startManager(t, []config.Backend{cfg}, config.OutgoingAuth{}, testOptions(nil))
	s := session(t, m, "files")

	if got := call(t, s, "env", map[string]any{"name": "GREETING"}); got != "hello from config" {
		t.Errorf("child's GREETING = %q", got)
	}
	// The child inherits PATH from vmcp's own environment.
	if got := call(t, s, "env", map[string]any{"name": "PATH"}); got != os.Getenv("PATH") {
		t.Errorf("child's PATH = %q, want vmcp's", got)
	}
	want, err := filepath.EvalSymlinks(cfg.Cwd)
	if err != nil {
		t.Fatal(err)
	}
	got, err := filepath.EvalSymlinks(call(t, s, "cwd", nil))
	if err != nil {
		t.Fatal(err)
	}
	if got != want {
		t.Errorf("child's cwd = %q, want %q", got, want)
	}
}

func TestStdioCloseEndsTheWholeProcessGroup(t *testing.T) {
	t.Parallel()
	m, err := backends.New([]config.Backend{stdioConfig(t, "npx-like")}, config.OutgoingAuth{}, testOptions(nil))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = m.Close() }) // should the test stop early
	m.Start(t.Context())
	s := session(t, m, "npx-like")

	pgid, err := strconv.Atoi(call(t, s, "pgid", nil))
	if err != nil {
		t.Fatal(err)
	}
	if pgid == syscall.Getpgrp() {
		t.Fatalf("child runs in vmcp's process group %d; closing it would hit vmcp", pgid)
	}
	grandchild, err := strconv.Atoi(call(t, s, "spawn", nil))
	if err != nil {
		t.Fatal(err)
	}
	if alive := groupMembers(pgid); !contains(alive, grandchild) || !contains(alive, pgid) {
		t.Fatalf("group %d has %v, want the child and grandchild %d", pgid, alive, grandchild)
	}

	start := time.Now()
	if err := m.Close(); err != nil {
		t.Errorf("Close: %v", err)
	}
	// The grandchild holds the child's stderr open, as npx's node does.
	t.Logf("Close took %v", time.Since(start))
	if d := time.Since(start); d > 3*time.Second {
		t.Errorf("Close took %v", d)
	}
	// SIGKILL has been sent by now; allow the kernel a moment to deliver it.
	// kill(-pgid, 0) is no use as a check: the orphaned grandchild stays a
	// zombie where init does not reap, as in some containers.
	waitFor(t, time.Second, "the child's process group to be gone", func() bool { return len(groupMembers(pgid)) == 0 })
}

// groupMembers lists the live processes of process group pgid. Zombies do
// not count: they have exited and only wait for their parent (for an
// orphaned grandchild, init) to reap them.
func groupMembers(pgid int) []int {
	entries, _ := os.ReadDir("/proc")
	var out []int
	for _, e := range entries {
		pid, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		stat, err := os.ReadFile(filepath.Join("/proc", e.Name(), "stat"))
		if err != nil {
			continue
		}
		// pid (comm) state ppid pgrp ...; comm may contain spaces.
		rest := string(stat[strings.LastIndexByte(string(stat), ')')+2:])
		f := strings.Fields(rest)
		if len(f) < 3 || f[0] == "Z" || f[0] == "X" {
			continue
		}
		if g, _ := strconv.Atoi(f[2]); g == pgid {
			out = append(out, pid)
		}
	}
	return out
}

func contains(pids []int, pid int) bool {
	for _, p := range pids {
		if p == pid {
			return true
		}
	}
	return false
}

func TestStdioChildThatFailsIsUnavailableWithItsStderr(t *testing.T) {
	t.Parallel()
	cfg := stdioConfig(t, "broken")
	cfg.Env[childEnv] = "fail"
	m := startManager(t, []config.Backend{cfg}, config.OutgoingAuth{}, testOptions(nil))

	st := status(m, "broken")
	if st.State != backends.StateUnavailable {
		t.Errorf("state = %s, want unavailable", st.State)
	}
	if !strings.Contains(st.LastError, "missing API key") {
		t.Errorf("LastError = %q, want the child's stderr", st.LastError)
	}
}

func TestStdioCommandNotFound(t *testing.T) {
	t.Parallel()
	cfg := config.Backend{Name: "ghost", Transport: config.TransportStdio, Command: filepath.Join(t.TempDir(), "no-such-server")}
	m := startManager(t, []config.Backend{cfg}, config.OutgoingAuth{}, testOptions(nil))

	st := status(m, "ghost")
	if st.State != backends.StateUnavailable || !strings.Contains(st.LastError, "no-such-server") {
		t.Errorf("status = %+v, want unavailable naming the command", st)
	}
}
