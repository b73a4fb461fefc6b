package audit

import (
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"

	"github.com/vmcp/vmcp/config"
)

// TestCheckOutput: CheckOutput fails where NewWriter would, and changes
// nothing on disk either way.
func TestCheckOutput(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name    string
		setup   func(t *testing.T, dir string) string // returns the output
		wantErr string
	}{
		{name: "stdout", setup: func(*testing.T, string) string { return "stdout" }},
		{name: "stderr", setup: func(*testing.T, string) string { return "stderr" }},
		{name: "a new file", setup: func(_ *testing.T, dir string) string { return filepath.Join(dir, "audit.log") }},
		{name: "an existing file", setup: func(t *testing.T, dir string) string {
			path := filepath.Join(dir, "audit.log")
			if err := os.WriteFile(path, []byte("{\"kept\":true}\n"), 0o600); err != nil {
				t.Fatal(err)
			}
			return path
		}},
		{name: "a missing directory", wantErr: "no such file or directory", setup: func(_ *testing.T, dir string) string {
			return filepath.Join(dir, "missing", "audit.log")
		}},
		{name: "a directory", wantErr: "is a directory", setup: func(_ *testing.T, dir string) string { return dir }},
		{name: "a FIFO without a reader, not opened", setup: func(t *testing.T, dir string) string {
			path := filepath.Join(dir, "audit.fifo")
			if err := syscall.Mkfifo(path, 0o600); err != nil {
				t.Skip("mkfifo:", err)
			}
			return path
		}},
		{name: "a read-only file", wantErr: "permission denied", setup: func(t *testing.T, dir string) string {
			if os.Geteuid() == 0 {
				t.Skip("root may write to any file")
			}
			path := filepath.Join(dir, "audit.log")
			if err := os.WriteFile(path, nil, 0o400); err != nil {
				t.Fatal(err)
			}
			return path
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			dir := t.TempDir()
			out := tt.setup(t, dir)
			before := snapshot(t, dir)

			err := CheckOutput(config.Audit{Enabled: true, Output: out})

			if tt.wantErr == "" && err != nil {
				t.Errorf("CheckOutput(%q) = %v, want nil", out, err)
			}
			if tt.wantErr != "" && (err == nil || !strings.Contains(err.Error(), tt.wantErr)) {
				t.Errorf("CheckOutput(%q) = %v, want an error containing %q", out, err, tt.wantErr)
			}
			if after := snapshot(t, dir); after != before {
				t.Errorf("CheckOutput changed the directory:\nbefore: %s\nafter:  %s", before, after)
			}
			if strings.Contains(tt.name, "FIFO") {
				return // NewWriter would wait for a reader
			}
			// NewWriter agrees.
			w, werr := NewWriter(config.Audit{Enabled: true, Output: out}, WriterOptions{})
			if werr == nil {
				_ = w.Close()
			}
			if (werr == nil) != (err == nil) {
				t.Errorf("CheckOutput = %v but NewWriter = %v", err, werr)
			}
		})
	}
}

// snapshot lists the names, sizes and contents of the files in dir.
func snapshot(t *testing.T, dir string) string {
	t.Helper()
	entries, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	var b strings.Builder
	for _, e := range entries {
		b.WriteString(e.Name())
		if e.Type().IsRegular() {
			data, _ := os.ReadFile(filepath.Join(dir, e.Name()))
			b.WriteString("=" + string(data))
		}
		b.WriteString(";")
	}
	return b.String()
}
