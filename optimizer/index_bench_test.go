package optimizer

import (
	"fmt"
	"math/rand/v2"
	"runtime"
	"strings"
	"testing"

	"github.com/mark3labs/mcp-go/mcp"

	"github.com/vmcp/vmcp/internal/bfcl"
)

// benchCatalogue returns a 10,000-tool catalogue and queries for it: the
// BFCL tool-retrieval set's tools replicated under distinct backend prefixes
// ("s2_get_weather") and its queries, or, when the data set is not there,
// tools and queries drawn from a synthetic vocabulary.
func benchCatalogue(b *testing.B, n int) ([]mcp.Tool, []string) {
	b.Helper()
	var tools []mcp.Tool
	var queries []string
	if base, _, qs := tryLoadAblationData(); len(base) > 0 {
		tools = bfcl.Replicate(base, n)
		for _, q := range qs {
			queries = append(queries, q.Query)
		}
		return tools, queries
	}
	rng := rand.New(rand.NewPCG(1, 2))
	words := make([]string, 5000)
	for i := range words {
		words[i] = fmt.Sprintf("w%sx", strings.Repeat(string(rune('a'+i%26)), 1+i%7)) + fmt.Sprint(i)
	}
	pick := func(k int) string {
		ws := make([]string, k)
		for i := range ws {
			ws[i] = words[int(rng.ExpFloat64()*500)%len(words)]
		}
		return strings.Join(ws, " ")
	}
	for i := range n {
		schema := fmt.Sprintf(`{"type":"object","properties":{"p%d":{"type":"string","description":%q}}}`, i, pick(8))
		tools = append(tools, mcp.Tool{Name: fmt.Sprintf("tool_%d_%s", i, pick(2)), Description: pick(15), RawInputSchema: []byte(schema)})
	}
	for range 1000 {
		queries = append(queries, pick(12))
	}
	return tools, queries
}

// BenchmarkBuild10k builds the index over 10,000 tools and reports the heap
// the index holds.
func BenchmarkBuild10k(b *testing.B) {
	tools, _ := benchCatalogue(b, 10000)
	var heap uint64
	for b.Loop() {
		b.StopTimer()
		runtime.GC()
		var before, after runtime.MemStats
		runtime.ReadMemStats(&before)
		b.StartTimer()
		ix := NewIndex(tools, nil)
		b.StopTimer()
		runtime.GC()
		runtime.ReadMemStats(&after)
		heap = after.HeapAlloc - min(before.HeapAlloc, after.HeapAlloc)
		runtime.KeepAlive(ix)
		b.StartTimer()
	}
	b.ReportMetric(float64(heap), "index-bytes")
}

// BenchmarkSearch10k is one find_tool search (k = 10) over 10,000 tools,
// cycling through the queries.
func BenchmarkSearch10k(b *testing.B) {
	tools, queries := benchCatalogue(b, 10000)
	ix := NewIndex(tools, nil)
	b.ReportAllocs()
	i := 0
	for b.Loop() {
		ix.Search(queries[i%len(queries)], "", 10)
		i++
	}
}
