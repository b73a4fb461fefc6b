package optimizer

import (
	"math"
	"strings"
	"testing"
	"unicode"
	"unicode/utf8"

	"github.com/mark3labs/mcp-go/mcp"
)

// Fuzz targets for the text the optimizer reads from clients (find_tool's
// description and keywords) and from backends (tool names and
// descriptions). Plain go test runs the seeds; docs/architecture.md
// ("Fuzzing") says how to run them longer.

var fuzzTexts = []string{
	"get_weather",
	"getUserProfile HTTPServer sha256 v2",
	"Café déjà-vu",
	"查询天气 北京的天气 weather",
	"API调用",
	"  ,.;  ",
	"",
	"What is the weather in Paris for me?",
	"id a3f9c2e1d4b5a6978877665544332211aabbccddeeff00112233",
	"İstanbul ǅemal ΣΊΣΥΦΟΣ",
	"\xff\xfeabc\x00def",
	"e\u0301t\u00e9 \u0e2a\u0e27\u0e31\u0e2a\u0e14\u0e35",
}

// FuzzSplitWords: every word part is non-empty, lower case, at most
// maxTokenRunes runes, made only of letters, digits and combining marks,
// and is a piece of the lower-cased input; the analyzer's terms are
// non-empty and the same with or without its cache.
func FuzzSplitWords(f *testing.F) {
	for _, s := range fuzzTexts {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		lower := strings.ToLower(s)
		splitWords(s, func(w string) {
			switch {
			case w == "":
				t.Fatalf("splitWords(%q) emitted an empty part", s)
			case strings.ToLower(w) != w:
				t.Fatalf("splitWords(%q) emitted %q, not lower case", s, w)
			case utf8.RuneCountInString(w) > maxTokenRunes:
				t.Fatalf("splitWords(%q) emitted %q, longer than %d runes", s, w, maxTokenRunes)
			case !strings.Contains(lower, w):
				t.Fatalf("splitWords(%q) emitted %q, not in the lower-cased input", s, w)
			}
			for _, r := range w {
				if !unicode.IsLetter(r) && !unicode.IsDigit(r) && !unicode.Is(unicode.Mn, r) {
					t.Fatalf("splitWords(%q) emitted %q with separator %U", s, w, r)
				}
			}
		})
		var plain, cached []string
		(&analyzer{}).terms(s, func(term string) { plain = append(plain, term) })
		(&analyzer{cache: map[string]string{}}).terms(s+" "+s, func(term string) { cached = append(cached, term) })
		if len(cached) != 2*len(plain) {
			t.Fatalf("terms(%q): %d without cache, %d for it twice with one", s, len(plain), len(cached))
		}
		for i, term := range plain {
			if term == "" || cached[i] != term || cached[len(plain)+i] != term {
				t.Fatalf("terms(%q)[%d] = %q; with a cache %q then %q", s, i, term, cached[i], cached[len(plain)+i])
			}
		}
	})
}

// FuzzIndexSearch indexes a small catalogue plus one tool from the fuzzer
// and searches it: at most k matches, best first, each score positive and
// finite, each a distinct catalogue tool, the same answer twice, none for a
// query without terms; and a tool alone in its index is found by its own
// name when the name has a term.
func FuzzIndexSearch(f *testing.F) {
	for i, s := range fuzzTexts {
		f.Add(s, fuzzTexts[(i+1)%len(fuzzTexts)], fuzzTexts[(i+2)%len(fuzzTexts)], "", int8(i%6))
	}
	f.Add("get_forecast", "Weather for the coming days.", "weather tomorrow", "forecast", int8(3))
	f.Add("read_file", "Read a file.", "fil", "filesystem", int8(-1))
	f.Fuzz(func(t *testing.T, name, desc, query, keywords string, k int8) {
		catalogue := []mcp.Tool{
			tool("get_weather", "Current weather for a city.", `{"type":"object","properties":{"city":{"type":"string"}}}`),
			tool("read_file", "Read a file from the filesystem.", ""),
			tool("create_pull_request", "Open a pull request on GitHub.", ""),
			tool("查询天气", "查询北京的天气", ""),
			tool(name, desc, ""),
		}
		ix := NewIndex(catalogue, nil)
		got := ix.Search(query, keywords, int(k))
		if k <= 0 && got != nil {
			t.Fatalf("Search with k=%d = %d matches, want none", k, len(got))
		}
		if len(got) > max(int(k), 0) || len(got) > ix.Len() {
			t.Fatalf("Search(k=%d) = %d matches over %d tools", k, len(got), ix.Len())
		}
		seen := map[*mcp.Tool]bool{}
		for i, m := range got {
			if !(m.Score > 0) || math.IsInf(m.Score, 0) {
				t.Fatalf("match %d (%q) has score %v", i, m.Tool.Name, m.Score)
			}
			if i > 0 && m.Score > got[i-1].Score {
				t.Fatalf("match %d scores %v, above match %d's %v", i, m.Score, i-1, got[i-1].Score)
			}
			if idx := indexOf(catalogue, m.Tool); idx < 0 || seen[m.Tool] {
				t.Fatalf("match %d (%q) is not a distinct catalogue entry", i, m.Tool.Name)
			}
			seen[m.Tool] = true
		}
		again := ix.Search(query, keywords, int(k))
		if len(again) != len(got) {
			t.Fatalf("Search answered %d, then %d matches", len(got), len(again))
		}
		for i := range got {
			if again[i] != got[i] {
				t.Fatalf("Search answered %+v, then %+v at %d", got[i], again[i], i)
			}
		}
		if countTerms(query)+countTerms(keywords) == 0 && len(got) > 0 {
			t.Fatalf("query %q keywords %q have no terms but matched %q", query, keywords, got[0].Tool.Name)
		}
		alone := NewIndex([]mcp.Tool{tool(name, desc, "")}, nil)
		if m := alone.Search(name, "", 5); countTerms(name) > 0 && (len(m) != 1 || m[0].Tool.Name != name) {
			t.Fatalf("tool %q alone in its index is not found by its name: %d matches", name, len(m))
		}
	})
}

// indexOf returns the index in catalogue of the entry p points to, or -1.
func indexOf(catalogue []mcp.Tool, p *mcp.Tool) int {
	for i := range catalogue {
		if &catalogue[i] == p {
			return i
		}
	}
	return -1
}

// countTerms returns the number of index terms of s.
func countTerms(s string) int {
	n := 0
	(&analyzer{}).terms(s, func(string) { n++ })
	return n
}
