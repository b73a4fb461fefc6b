// Command retrieval measures the optimizer's tool search on the BFCL v4
// tool-retrieval data set: ranking quality per category next to the README's
// plain-BM25 baseline, the size of tools/list with the optimizer off and on,
// and the index's build time, memory and search latency on the data set and
// on a synthetic 10,000-tool catalogue.
//
// Run it from the module root:
//
//	go run ./bench/retrieval [-data path] [-rounds n]
package main

import (
	"encoding/json"
	"flag"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"runtime"
	"slices"
	"sort"
	"time"

	"github.com/mark3labs/mcp-go/mcp"

	"github.com/vmcp/vmcp/internal/bfcl"
	"github.com/vmcp/vmcp/optimizer"
)

const defaultData = bfcl.Path

func main() {
	data := flag.String("data", defaultData, "the data set; a relative path is tried from the working directory, then from the module root")
	rounds := flag.Int("rounds", 5, "repetitions of each timing (the median is reported)")
	synthetic := flag.Int("synthetic", 10000, "size of the synthetic catalogue for speed and memory")
	maxTools := flag.Int("max-tools", 8, "maxToolsToReturn for the optimizer-on tools/list")
	var emb hybridFlags
	flag.StringVar(&emb.url, "embeddings", "", "an OpenAI-compatible embeddings API base URL (e.g. http://127.0.0.1:11434/v1): also measure the hybrid ranking")
	flag.StringVar(&emb.model, "model", "use-lite", "the embedding model (with -embeddings)")
	flag.BoolVar(&emb.useLite, "use-lite", false, "start test/js/embed.mjs (Universal Sentence Encoder lite) and measure the hybrid ranking with it")
	flag.Float64Var(&emb.weight, "weight", 0.5, "the hybrid weight of the vector score")
	flag.StringVar(&emb.vectors, "vectors", "", "a file of the tool and query vectors: read when it exists (no embedding), written otherwise")
	flag.Parse()

	if err := run(*data, *rounds, *synthetic, *maxTools, emb); err != nil {
		fmt.Fprintln(os.Stderr, "retrieval:", err)
		os.Exit(1)
	}
}

type query = bfcl.Query

func run(path string, rounds, synthetic, maxTools int, emb hybridFlags) error {
	path, err := resolve(path)
	if err != nil {
		return err
	}
	ds, err := bfcl.Load(path)
	if err != nil {
		return err
	}
	tools := ds.Tools
	fmt.Printf("data set: %s\n%d tools, %d queries\n\n", path, len(tools), len(ds.Queries))

	servers := optimizer.ServersByName(ds.Servers)
	ix := optimizer.NewIndex(tools, servers)
	lex := evaluate(lexical(ix), ds.Queries)
	printQuality(lex)
	if emb.url != "" || emb.useLite || emb.vectors != "" {
		if err := compareHybrid(emb, ix, tools, servers, ds.Queries, lex); err != nil {
			return err
		}
	}
	if err := printListSizes(tools, ds.Servers, maxTools); err != nil {
		return err
	}

	fmt.Println("\nspeed and memory (median of", rounds, "rounds; find = Search(query, \"\", 10) over every query)")
	fmt.Printf("%-22s %8s %10s %12s %10s %10s\n", "catalogue", "tools", "build", "index heap", "find p50", "find p99")
	measure("BFCL data set", tools, ds.Queries, rounds)
	measure("synthetic", bfcl.Replicate(tools, synthetic), ds.Queries, rounds)
	return nil
}

// resolve finds path as given, or else relative to the module root.
func resolve(path string) (string, error) {
	if _, err := os.Stat(path); err == nil || filepath.IsAbs(path) {
		return path, err
	}
	dir, err := os.Getwd()
	if err != nil {
		return "", err
	}
	for {
		if _, err := os.Stat(filepath.Join(dir, "go.mod")); err == nil {
			p := filepath.Join(dir, path)
			_, err := os.Stat(p)
			return p, err
		}
		parent := filepath.Dir(dir)
		if parent == dir {
			return "", fmt.Errorf("%s: %w (and no module root above the working directory)", path, fs.ErrNotExist)
		}
		dir = parent
	}
}

// metrics are sums over queries; divide by n for the means.
type metrics struct {
	n                      int
	r1, r5, r10, hit5, mrr float64
}

func (m *metrics) add(o metrics) {
	m.n += o.n
	m.r1 += o.r1
	m.r5 += o.r5
	m.r10 += o.r10
	m.hit5 += o.hit5
	m.mrr += o.mrr
}

// searchFunc ranks the tools for query i (the 10 best).
type searchFunc func(i int, q query) []optimizer.Match

// lexical is the find_tool search without embeddings.
func lexical(ix *optimizer.Index) searchFunc {
	return func(_ int, q query) []optimizer.Match { return ix.Search(q.Query, "", 10) }
}

// score ranks one query with the find_tool code path and measures it as the
// data set's README defines: recall@k over the expected tools, hit@5 if any
// is in the top 5, reciprocal rank of the best-ranked one.
func score(search searchFunc, i int, q query) metrics {
	ranked := search(i, q)
	m := metrics{n: 1}
	best := 0
	for _, want := range q.Expected {
		rank := slices.IndexFunc(ranked, func(r optimizer.Match) bool { return r.Tool.Name == want }) + 1
		if rank == 0 {
			continue
		}
		if best == 0 || rank < best {
			best = rank
		}
		e := float64(len(q.Expected))
		if rank <= 1 {
			m.r1 += 1 / e
		}
		if rank <= 5 {
			m.r5 += 1 / e
			m.hit5 = 1
		}
		m.r10 += 1 / e
	}
	if best > 0 {
		m.mrr = 1 / float64(best)
	}
	return m
}

// slices of the results, in the README's order.
var sliceOrder = []string{"all", "single-tool queries", "multi-tool queries",
	"simple_python", "multiple", "parallel", "parallel_multiple", "live_simple",
	"live_multiple", "live_parallel", "live_parallel_multiple", "multi_turn_base"}

// baseline is the README's plain-BM25 table (R@1, R@5, R@10, hit@5, MRR),
// copied from ../shared/datasets/tool-retrieval/README.md.
var baseline = map[string][5]float64{
	"all":                    {0.403, 0.647, 0.726, 0.685, 0.554},
	"single-tool queries":    {0.438, 0.670, 0.744, 0.670, 0.542},
	"multi-tool queries":     {0.210, 0.522, 0.631, 0.768, 0.616},
	"simple_python":          {0.655, 0.877, 0.920, 0.877, 0.746},
	"multiple":               {0.660, 0.830, 0.890, 0.830, 0.738},
	"parallel":               {0.640, 0.840, 0.910, 0.840, 0.735},
	"parallel_multiple":      {0.305, 0.665, 0.760, 0.880, 0.780},
	"live_simple":            {0.293, 0.508, 0.598, 0.508, 0.387},
	"live_multiple":          {0.414, 0.650, 0.712, 0.650, 0.520},
	"live_parallel":          {0.200, 0.333, 0.533, 0.333, 0.282},
	"live_parallel_multiple": {0.321, 0.567, 0.639, 0.750, 0.588},
	"multi_turn_base":        {0.219, 0.490, 0.610, 0.581, 0.423},
}

func evaluate(search searchFunc, queries []query) map[string]*metrics {
	res := map[string]*metrics{}
	addTo := func(slice string, m metrics) {
		if res[slice] == nil {
			res[slice] = &metrics{}
		}
		res[slice].add(m)
	}
	for i, q := range queries {
		m := score(search, i, q)
		addTo("all", m)
		if len(q.Expected) == 1 {
			addTo("single-tool queries", m)
		} else {
			addTo("multi-tool queries", m)
		}
		addTo(q.Category, m)
	}
	return res
}

func printQuality(res map[string]*metrics) {
	fmt.Println("ranking quality: optimizer.Index vs the README's plain-BM25 baseline (in brackets)")
	fmt.Printf("%-24s %5s  %-14s %-14s %-14s %-14s %-14s\n", "slice", "n", "R@1", "R@5", "R@10", "hit@5", "MRR")
	names := slices.Clone(sliceOrder)
	for c := range res { // categories the README does not list, if the file grows
		if !slices.Contains(names, c) {
			names = append(names, c)
		}
	}
	for _, name := range names {
		m := res[name]
		if m == nil {
			continue
		}
		n := float64(m.n)
		ours := [5]float64{m.r1 / n, m.r5 / n, m.r10 / n, m.hit5 / n, m.mrr / n}
		fmt.Printf("%-24s %5d ", name, m.n)
		base, ok := baseline[name]
		for i, v := range ours {
			if ok {
				fmt.Printf(" %.3f (%.3f)", v, base[i])
			} else {
				fmt.Printf(" %.3f (  -  )", v)
			}
		}
		fmt.Println()
	}
}

// printListSizes prints the bytes of a tools/list result with the optimizer
// off (the whole catalogue) and on (find_tool and call_tool only).
func printListSizes(tools []mcp.Tool, servers []string, maxTools int) error {
	off, err := json.Marshal(map[string]any{"tools": tools})
	if err != nil {
		return err
	}
	defs := optimizer.Definitions(maxTools, optimizer.Coverage(tools, optimizer.ServersByName(servers)))
	on, err := json.Marshal(map[string]any{"tools": defs})
	if err != nil {
		return err
	}
	fmt.Printf("\ntools/list result: optimizer off %d bytes (%d tools), on %d bytes (%d tools), %.2f%% of off\n",
		len(off), len(tools), len(on), len(defs), 100*float64(len(on))/float64(len(off)))
	return nil
}

// measure prints the median build time, the heap the index holds and the
// p50/p99 latency of Search over every query, over rounds repetitions.
func measure(label string, tools []mcp.Tool, queries []query, rounds int) {
	var builds []time.Duration
	var heaps []uint64
	var ix *optimizer.Index
	for range rounds {
		ix = nil
		runtime.GC()
		var before, after runtime.MemStats
		runtime.ReadMemStats(&before)
		start := time.Now()
		ix = optimizer.NewIndex(tools, nil)
		builds = append(builds, time.Since(start))
		runtime.GC()
		runtime.ReadMemStats(&after)
		heaps = append(heaps, after.HeapAlloc-min(after.HeapAlloc, before.HeapAlloc))
		runtime.KeepAlive(ix)
	}
	lat := make([]time.Duration, 0, rounds*len(queries))
	for range rounds {
		for _, q := range queries {
			start := time.Now()
			ix.Search(q.Query, "", 10)
			lat = append(lat, time.Since(start))
		}
	}
	slices.Sort(builds)
	slices.Sort(heaps)
	sort.Slice(lat, func(i, j int) bool { return lat[i] < lat[j] })
	fmt.Printf("%-22s %8d %10s %9.1f MB %10s %10s\n", label, ix.Len(),
		builds[len(builds)/2].Round(time.Millisecond/10), float64(heaps[len(heaps)/2])/(1<<20),
		lat[len(lat)/2].Round(time.Microsecond), lat[len(lat)*99/100].Round(time.Microsecond))
}
