package authz

import (
	"strings"
	"unicode/utf8"
)

// glob is a compiled name pattern: "*" matches any run of characters
// (none, and "/", included), "?" one character, anything else itself.
// The common shapes are matched without the general loop.
type glob struct {
	shape          globShape
	prefix, suffix string // literal text, or the parts around a lone "*"
	pattern        string // the whole pattern, for globGeneral
}

type globShape uint8

const (
	globAny          globShape = iota // "*"
	globLiteral                       // no wildcard: prefix is the name
	globPrefix                        // "abc*"
	globSuffix                        // "*abc"
	globPrefixSuffix                  // "ab*cd"
	globGeneral                       // anything else
)

func compileGlobs(patterns []string) []glob {
	if len(patterns) == 0 {
		return nil
	}
	out := make([]glob, len(patterns))
	for i, p := range patterns {
		out[i] = compileGlob(p)
	}
	return out
}

func compileGlob(p string) glob {
	if strings.Trim(p, "*") == "" && p != "" {
		return glob{shape: globAny}
	}
	if strings.ContainsRune(p, '?') {
		return glob{shape: globGeneral, pattern: p}
	}
	switch strings.Count(p, "*") {
	case 0:
		return glob{shape: globLiteral, prefix: p}
	case 1:
		before, after, _ := strings.Cut(p, "*")
		switch {
		case after == "":
			return glob{shape: globPrefix, prefix: before}
		case before == "":
			return glob{shape: globSuffix, suffix: after}
		}
		return glob{shape: globPrefixSuffix, prefix: before, suffix: after}
	}
	return glob{shape: globGeneral, pattern: p}
}

func (g *glob) match(name string) bool {
	switch g.shape {
	case globAny:
		return true
	case globLiteral:
		return name == g.prefix
	case globPrefix:
		return strings.HasPrefix(name, g.prefix)
	case globSuffix:
		return strings.HasSuffix(name, g.suffix)
	case globPrefixSuffix:
		return len(name) >= len(g.prefix)+len(g.suffix) &&
			strings.HasPrefix(name, g.prefix) && strings.HasSuffix(name, g.suffix)
	}
	return matchGeneral(g.pattern, name)
}

func matchAny(globs []glob, name string) bool {
	for i := range globs {
		if globs[i].match(name) {
			return true
		}
	}
	return false
}

// matchGeneral matches name against pattern, wildcards and all. It keeps
// only the last "*" to backtrack to, which suffices for "*" and "?": a
// later "*" can absorb whatever an earlier one would have. "?" and "*"
// step over whole UTF-8 characters (an invalid byte counts as one).
func matchGeneral(pattern, name string) bool {
	px, nx := 0, 0
	star, restart := -1, 0 // the last "*" seen, and where its match ends
	for nx < len(name) {
		if px < len(pattern) {
			switch c := pattern[px]; c {
			case '*':
				star, restart = px, nx
				px++
				continue
			case '?':
				_, n := utf8.DecodeRuneInString(name[nx:])
				px, nx = px+1, nx+n
				continue
			default:
				if name[nx] == c {
					px, nx = px+1, nx+1
					continue
				}
			}
		}
		if star < 0 {
			return false
		}
		_, n := utf8.DecodeRuneInString(name[restart:])
		restart += n
		px, nx = star+1, restart
	}
	for px < len(pattern) && pattern[px] == '*' {
		px++
	}
	return px == len(pattern)
}
