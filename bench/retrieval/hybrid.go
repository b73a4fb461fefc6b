package main

import (
	"bufio"
	"bytes"
	"context"
	"encoding/gob"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"time"

	"github.com/mark3labs/mcp-go/mcp"

	"github.com/vmcp/vmcp/config"
	"github.com/vmcp/vmcp/embeddings"
	"github.com/vmcp/vmcp/internal/bfcl"
	"github.com/vmcp/vmcp/optimizer"
)

// hybridFlags say where the embeddings come from.
type hybridFlags struct {
	url, model string
	useLite    bool
	weight     float64
	vectors    string // a file the vectors are kept in between runs
}

// vectorFile is what -vectors keeps: the vectors of the catalogue's tools
// (DocumentText) and of the queries, in order.
type vectorFile struct {
	Model          string
	Tools, Queries [][]float32
}

// compareHybrid embeds the catalogue (DocumentText, as vmcp does) and the
// queries, and prints lexical and hybrid side by side, overall and per
// category, with the time the embedding took.
func compareHybrid(f hybridFlags, ix *optimizer.Index, tools []mcp.Tool, servers []*optimizer.Server, queries []query, lex map[string]*metrics) error {
	if f.vectors != "" {
		if raw, err := os.ReadFile(f.vectors); err == nil {
			var vf vectorFile
			if err := gob.NewDecoder(bytes.NewReader(raw)).Decode(&vf); err != nil {
				return fmt.Errorf("%s: %w", f.vectors, err)
			}
			fmt.Printf("\nvectors from %s (%s)\n", f.vectors, vf.Model)
			f.model = vf.Model
			return printHybrid(f, ix, vf.Tools, vf.Queries, queries, lex, 0, 0)
		}
	}
	if f.useLite {
		url, stop, err := startUSELite()
		if err != nil {
			return err
		}
		defer stop()
		f.url = url
	}
	svc, err := embeddings.New(config.Embeddings{URL: f.url, Model: f.model, BatchSize: 64, Timeout: config.Duration(10 * time.Second)},
		embeddings.Options{})
	if err != nil {
		return err
	}
	ctx := context.Background()
	texts := make([]string, len(tools))
	for i := range tools {
		texts[i] = optimizer.DocumentText(&tools[i], servers[i])
	}
	start := time.Now()
	vecs, err := svc.Documents(ctx, texts, nil)
	if err != nil {
		return fmt.Errorf("embed the tools: %w", err)
	}
	toolTime := time.Since(start)
	qtexts := make([]string, len(queries))
	for i, q := range queries {
		qtexts[i] = q.Query
	}
	start = time.Now()
	qvecs, err := svc.Documents(ctx, qtexts, nil) // batched; the queries have no prefix here
	if err != nil {
		return fmt.Errorf("embed the queries: %w", err)
	}
	queryTime := time.Since(start)
	// One query at a time, as find_tool embeds them (no cache: distinct
	// texts).
	var qlat []time.Duration
	for i := range min(200, len(queries)) {
		s := time.Now()
		if _, err := svc.Query(ctx, fmt.Sprintf("%s (%d)", queries[i].Query, i)); err != nil {
			return fmt.Errorf("embed a query: %w", err)
		}
		qlat = append(qlat, time.Since(s))
	}
	slices.Sort(qlat)
	defer fmt.Printf("query embedding (%s, one at a time, %d queries): p50 %s, p99 %s\n", f.model, len(qlat),
		qlat[len(qlat)/2].Round(time.Microsecond), qlat[len(qlat)*99/100].Round(time.Microsecond))
	if f.vectors != "" {
		var buf bytes.Buffer
		if err := gob.NewEncoder(&buf).Encode(vectorFile{Model: f.model, Tools: vecs, Queries: qvecs}); err != nil {
			return err
		}
		if err := os.WriteFile(f.vectors, buf.Bytes(), 0o644); err != nil {
			return err
		}
	}
	return printHybrid(f, ix, vecs, qvecs, queries, lex, toolTime, queryTime)
}

// printHybrid prints lexical, vector-only and hybrid side by side.
func printHybrid(f hybridFlags, ix *optimizer.Index, vecs, qvecs [][]float32, queries []query, lex map[string]*metrics, toolTime, queryTime time.Duration) error {
	vs, ok := optimizer.NewVectors(vecs)
	if !ok {
		return fmt.Errorf("the tool vectors differ in size")
	}
	hyb := evaluate(func(i int, q query) []optimizer.Match {
		return ix.SearchHybrid(q.Query, "", qvecs[i], vs, f.weight, 10)
	}, queries)
	vec := evaluate(func(i int, q query) []optimizer.Match {
		return ix.SearchHybrid(q.Query, "", qvecs[i], vs, 1, 10)
	}, queries)

	defer measureHybrid(tools(ix), vecs, qvecs, queries, f.weight)
	fmt.Printf("\nhybrid ranking (%s, weight %.2f): embedded %d tools in %s, %d queries in %s\n",
		f.model, f.weight, len(vecs), toolTime.Round(time.Millisecond), len(queries), queryTime.Round(time.Millisecond))
	fmt.Printf("%-24s %5s  %8s %8s %8s %7s  %8s %8s\n", "slice", "n", "lex R@5", "vec R@5", "hyb R@5", "Δ", "lex MRR", "hyb MRR")
	names := slices.Clone(sliceOrder)
	for _, name := range names {
		l, h, v := lex[name], hyb[name], vec[name]
		if l == nil {
			continue
		}
		n := float64(l.n)
		fmt.Printf("%-24s %5d  %8.3f %8.3f %8.3f %+7.3f  %8.3f %8.3f\n", name, l.n, l.r5/n, v.r5/n, h.r5/n, (h.r5-l.r5)/n, l.mrr/n, h.mrr/n)
	}
	return nil
}

// startUSELite starts test/js/embed.mjs and returns its API base URL.
func startUSELite() (string, func(), error) {
	root, err := moduleRoot()
	if err != nil {
		return "", nil, err
	}
	cmd := exec.Command("node", filepath.Join(root, "test", "js", "embed.mjs"), "--exit-on-stdin-close", "--bench-batches", "0")
	cmd.Dir = filepath.Join(root, "test", "js")
	cmd.Stderr = os.Stderr
	stdin, err := cmd.StdinPipe()
	if err != nil {
		return "", nil, err
	}
	out, err := cmd.StdoutPipe()
	if err != nil {
		return "", nil, err
	}
	if err := cmd.Start(); err != nil {
		return "", nil, fmt.Errorf("start test/js/embed.mjs (run npm ci in test/js): %w", err)
	}
	stop := func() { _ = stdin.Close(); _ = cmd.Wait() }
	line, err := bufio.NewReader(out).ReadString('\n')
	rest, ok := strings.CutPrefix(line, "READY ")
	if err != nil || !ok {
		stop()
		return "", nil, fmt.Errorf("embed.mjs did not start: %q %v", line, err)
	}
	var ready struct {
		URL string `json:"url"`
	}
	if err := json.Unmarshal([]byte(rest), &ready); err != nil {
		stop()
		return "", nil, err
	}
	return ready.URL, stop, nil
}

// moduleRoot finds the directory holding go.mod, from the working
// directory up.
func moduleRoot() (string, error) {
	dir, err := os.Getwd()
	if err != nil {
		return "", err
	}
	for {
		if _, err := os.Stat(filepath.Join(dir, "go.mod")); err == nil {
			return dir, nil
		}
		parent := filepath.Dir(dir)
		if parent == dir {
			return "", fmt.Errorf("no go.mod above the working directory")
		}
		dir = parent
	}
}

// tools returns the catalogue of ix.
func tools(ix *optimizer.Index) []mcp.Tool { return ix.Tools() }

// measureHybrid prints the latency of the hybrid search (query vectors
// given: the query's embedding is measured apart) on the data set and on a
// catalogue of 10,000 tools made of copies of it and of its vectors.
func measureHybrid(catalogue []mcp.Tool, vecs, qvecs [][]float32, queries []query, w float64) {
	fmt.Printf("\nhybrid search latency (query vectors precomputed; find = SearchHybrid(query, \"\", 8) over every query)\n")
	fmt.Printf("%-22s %8s %10s %10s\n", "catalogue", "tools", "find p50", "find p99")
	for _, n := range []int{len(catalogue), 10000} {
		big := bfcl.Replicate(catalogue, n)
		bigVecs := make([][]float32, len(big))
		for i := range big {
			bigVecs[i] = vecs[i%len(vecs)]
		}
		ix := optimizer.NewIndex(big, nil)
		vs, _ := optimizer.NewVectors(bigVecs)
		lat := make([]time.Duration, 0, len(queries))
		for i, q := range queries {
			s := time.Now()
			ix.SearchHybrid(q.Query, "", qvecs[i], vs, w, 8)
			lat = append(lat, time.Since(s))
		}
		slices.Sort(lat)
		fmt.Printf("%-22s %8d %10s %10s\n", "BFCL ×"+fmt.Sprint(n/len(catalogue)), n,
			lat[len(lat)/2].Round(time.Microsecond), lat[len(lat)*99/100].Round(time.Microsecond))
	}
}
