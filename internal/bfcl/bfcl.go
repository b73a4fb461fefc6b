// Package bfcl reads the BFCL v4 tool-retrieval data set that the
// optimizer's search is measured on (bench/retrieval, the optimizer's
// ablation test and benchmarks). The data set lives outside the module, in
// ../shared/datasets/tool-retrieval.
package bfcl

import (
	"encoding/json"
	"fmt"
	"os"

	"github.com/mark3labs/mcp-go/mcp"
)

// Path is where the data set is, relative to the module root.
const Path = "../shared/datasets/tool-retrieval/bfcl-v4-tool-retrieval.json"

// Query is one retrieval query: the tools a good search returns for it.
type Query struct {
	ID       string   `json:"id"`
	Category string   `json:"category"`
	Query    string   `json:"query"`
	Expected []string `json:"expected"`
}

// Set is the data set: its tools exactly as vmcp receives them from a
// backend (the schema as RawInputSchema, InputSchema empty) and its
// queries.
type Set struct {
	Tools []mcp.Tool
	// Servers holds the server of each tool, by index: the name the data
	// set gives it ("GorillaFileSystem", "live_multiple-12").
	Servers []string
	Queries []Query
}

// Load reads the data set at path.
func Load(path string) (*Set, error) {
	raw, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	// The file's shape; fields vmcp does not use are left out.
	var ds struct {
		Tools []struct {
			Name        string          `json:"name"`
			Server      string          `json:"server"`
			Description string          `json:"description"`
			InputSchema json.RawMessage `json:"inputSchema"`
		} `json:"tools"`
		Queries []Query `json:"queries"`
	}
	if err := json.Unmarshal(raw, &ds); err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	s := &Set{Tools: make([]mcp.Tool, len(ds.Tools)), Servers: make([]string, len(ds.Tools)), Queries: ds.Queries}
	for i, t := range ds.Tools {
		s.Tools[i] = mcp.Tool{Name: t.Name, Description: t.Description, RawInputSchema: t.InputSchema}
		s.Servers[i] = t.Server
	}
	return s, nil
}

// Replicate returns n tools made of copies of tools, each copy after the
// first with its names prefixed the way the aggregator prefixes a
// backend's ("s2_get_weather").
func Replicate(tools []mcp.Tool, n int) []mcp.Tool {
	out := make([]mcp.Tool, 0, n)
	for copyNo := 0; len(out) < n && len(tools) > 0; copyNo++ {
		for _, t := range tools {
			if len(out) == n {
				break
			}
			if copyNo > 0 {
				t.Name = fmt.Sprintf("s%d_%s", copyNo, t.Name)
			}
			out = append(out, t)
		}
	}
	return out
}
