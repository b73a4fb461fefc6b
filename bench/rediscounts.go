package main

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strconv"
	"strings"
	"time"
)

// redisCounts are a redis-server's counters: the commands it ran, by name
// (INFO commandstats; a script counts as its EVAL/EVALSHA, a pipeline as
// each of its commands), and the reads it processed (INFO stats
// total_reads_processed: one per round trip, a pipeline included). The
// -sessions and -replicas modes read them around each measured phase to
// tell how many round trips to Redis a call costs.
type redisCounts struct {
	cmds  map[string]int64
	reads int64
	err   error
}

// counts reads the server's counters; empty for a nil p.
func (p *redisProc) counts(ctx context.Context) redisCounts {
	if p == nil {
		return redisCounts{}
	}
	ictx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	info, err := p.client.Info(ictx, "commandstats", "stats").Result()
	if err != nil {
		return redisCounts{err: err}
	}
	c := redisCounts{cmds: make(map[string]int64)}
	for _, line := range strings.Split(info, "\n") {
		line = strings.TrimSpace(line)
		if v, ok := strings.CutPrefix(line, "total_reads_processed:"); ok {
			if c.reads, err = strconv.ParseInt(v, 10, 64); err != nil {
				return redisCounts{err: fmt.Errorf("stats %q: %w", line, err)}
			}
			continue
		}
		rest, ok := strings.CutPrefix(line, "cmdstat_")
		if !ok {
			continue
		}
		name, fields, _ := strings.Cut(rest, ":")
		for _, kv := range strings.Split(fields, ",") {
			if v, ok := strings.CutPrefix(kv, "calls="); ok {
				n, err := strconv.ParseInt(v, 10, 64)
				if err != nil {
					return redisCounts{err: fmt.Errorf("commandstats %q: %w", line, err)}
				}
				c.cmds[name] = n
			}
		}
	}
	return c
}

// since is c minus an earlier reading, less the bench's own reading: the
// INFO of the earlier reading (its command and its read) and the read of
// this one.
func (c redisCounts) since(before redisCounts) redisCounts {
	d := redisCounts{cmds: make(map[string]int64), reads: c.reads - before.reads - 1, err: errors.Join(c.err, before.err)}
	for name, n := range c.cmds {
		if x := n - before.cmds[name]; x != 0 && name != "info" {
			d.cmds[name] = x
		}
	}
	d.reads = max(d.reads, 0)
	return d
}

// add sums two deltas.
func (c redisCounts) add(d redisCounts) redisCounts {
	s := redisCounts{cmds: make(map[string]int64, len(c.cmds)+len(d.cmds)), reads: c.reads + d.reads, err: errors.Join(c.err, d.err)}
	for name, n := range c.cmds {
		s.cmds[name] += n
	}
	for name, n := range d.cmds {
		s.cmds[name] += n
	}
	return s
}

// total is the number of commands run (INFO left out).
func (c redisCounts) total() int64 {
	var t int64
	for name, n := range c.cmds {
		if name != "info" {
			t += n
		}
	}
	return t
}

// describe lists the commands, most frequent first, with their count per
// call made; "none" when there were none.
func (c redisCounts) describe(calls int) string {
	if c.err != nil {
		return "unknown (" + c.err.Error() + ")"
	}
	names := make([]string, 0, len(c.cmds))
	for name := range c.cmds {
		names = append(names, name)
	}
	if len(names) == 0 {
		return "none"
	}
	slices.SortFunc(names, func(a, b string) int {
		if c.cmds[a] != c.cmds[b] {
			return int(c.cmds[b] - c.cmds[a])
		}
		return strings.Compare(a, b)
	})
	parts := make([]string, len(names))
	for i, name := range names {
		parts[i] = fmt.Sprintf("%s %d (%.4f/call)", name, c.cmds[name], float64(c.cmds[name])/float64(max(calls, 1)))
	}
	return strings.Join(parts, ", ")
}
