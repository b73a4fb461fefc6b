//go:build unix

package config

import "syscall"

// defaultMaxConnections is the default of server.maxConnections: half the
// process's soft limit of open files (which Go raises to the hard limit at
// start), leaving the other half to what vmcp opens itself, between 64 and
// 1<<20; fallbackMaxConnections when the limit cannot be read.
func defaultMaxConnections() int {
	var lim syscall.Rlimit
	if err := syscall.Getrlimit(syscall.RLIMIT_NOFILE, &lim); err != nil {
		return fallbackMaxConnections
	}
	return halfOfFileLimit(uint64(lim.Cur))
}
