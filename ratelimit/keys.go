package ratelimit

import (
	"crypto/sha256"
	"encoding/hex"
	"strings"

	"github.com/vmcp/vmcp/auth"
	"github.com/vmcp/vmcp/config"
)

// keyer turns a call (tool name, identity) into the buckets that apply to
// it. Every key of one server starts with "vmcp:{<server>}:", so all of
// them share one Redis Cluster hash tag:
//
//	vmcp:{<server>}:shared
//	vmcp:{<server>}:user:<user hash>
//	vmcp:{<server>}:tool:<tool>:shared
//	vmcp:{<server>}:tool:<tool>:user:<user hash>
//
// The user hash is the first 32 hex digits of sha256(issuer NUL subject):
// no identity appears in a key. A tool gets keys only when it has a
// tools[] entry and is in the catalogue, so the key space is bounded by
// the config.
type keyer struct {
	shared  *Bucket // Key complete
	perUser *Bucket // Key is the prefix before the user hash
	tools   map[string]toolBuckets
	known   func(string) bool // nil: every tool is known
}

// toolBuckets are the buckets of one tools[] entry, keyed like keyer's.
type toolBuckets struct {
	shared, perUser           *Bucket
	sharedScope, perUserScope string
}

// Scope names of the server-wide buckets, as a rejection reports them.
const (
	scopeShared  = "shared"
	scopePerUser = "perUser"
)

// maxBuckets is the most buckets one call can be checked against.
const maxBuckets = 4

// plan is the buckets of one call with the scope name of each.
type plan struct {
	buckets [maxBuckets]Bucket
	scopes  [maxBuckets]string
	n       int
}

func (p *plan) add(b Bucket, scope string) {
	p.buckets[p.n], p.scopes[p.n] = b, scope
	p.n++
}

// newKeyer returns the keyer of cfg for server, or nil when cfg configures
// no bucket.
func newKeyer(cfg config.RateLimiting, server string, known func(string) bool) *keyer {
	if !cfg.Configured() {
		return nil
	}
	prefix := "vmcp:{" + server + "}:"
	k := &keyer{known: known, tools: make(map[string]toolBuckets)}
	k.shared = bucket(cfg.Shared, prefix+"shared")
	k.perUser = bucket(cfg.PerUser, prefix+"user:")
	for _, t := range cfg.Tools {
		if _, dup := k.tools[t.Name]; dup || (t.Shared == nil && t.PerUser == nil) {
			continue
		}
		tp := prefix + "tool:" + t.Name + ":"
		k.tools[t.Name] = toolBuckets{
			shared:       bucket(t.Shared, tp+"shared"),
			perUser:      bucket(t.PerUser, tp+"user:"),
			sharedScope:  "shared tool " + t.Name,
			perUserScope: "perUser tool " + t.Name,
		}
	}
	return k
}

func bucket(b *config.Bucket, key string) *Bucket {
	if b == nil {
		return nil
	}
	return &Bucket{Key: key, Max: int64(b.MaxTokens), Refill: b.RefillPeriod.D()}
}

// plan returns the buckets a call of tool by id is checked against, in the
// order shared, perUser, tool shared, tool perUser (those configured).
func (k *keyer) plan(tool string, id auth.Identity) *plan {
	p := &plan{}
	var user string
	userKey := func(b *Bucket) Bucket {
		if user == "" {
			user = userHash(id)
		}
		return Bucket{Key: b.Key + user, Max: b.Max, Refill: b.Refill}
	}
	if k.shared != nil {
		p.add(*k.shared, scopeShared)
	}
	if k.perUser != nil {
		p.add(userKey(k.perUser), scopePerUser)
	}
	if tb, ok := k.tools[tool]; ok && (k.known == nil || k.known(tool)) {
		if tb.shared != nil {
			p.add(*tb.shared, tb.sharedScope)
		}
		if tb.perUser != nil {
			p.add(userKey(tb.perUser), tb.perUserScope)
		}
	}
	return p
}

// userHash is the key part naming id: the first 32 hex digits of
// sha256(issuer NUL subject).
func userHash(id auth.Identity) string {
	h := sha256.New()
	h.Write([]byte(id.Issuer))
	h.Write([]byte{0})
	h.Write([]byte(id.Subject))
	var sum [sha256.Size]byte
	return hex.EncodeToString(h.Sum(sum[:0]))[:32]
}

// rejectedScope names the buckets at indices rejected (into scopes),
// joined with ", ". Indices out of range are skipped; "all" when none is
// left, so a rejection always names something.
func rejectedScope(rejected []int, scopes []string) string {
	names := make([]string, 0, len(rejected))
	for _, i := range rejected {
		if i >= 0 && i < len(scopes) {
			names = append(names, scopes[i])
		}
	}
	if len(names) == 0 {
		return scopeAll
	}
	return strings.Join(names, ", ")
}
