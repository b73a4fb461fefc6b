package optimizer

import (
	"slices"
	"testing"
)

func TestSplitWords(t *testing.T) {
	tests := []struct {
		in   string
		want []string
	}{
		{"get_weather", []string{"get", "weather"}},
		{"list-pull-requests", []string{"list", "pull", "requests"}},
		{"math.factorial", []string{"math", "factorial"}},
		{"files/read", []string{"files", "read"}},
		{"getUserProfile", []string{"get", "user", "profile", "getuserprofile"}},
		{"HTTPServer", []string{"http", "server", "httpserver"}},
		{"TradingBot_get_stock_info", []string{"trading", "bot", "tradingbot", "get", "stock", "info"}},
		{"sha256", []string{"sha", "256", "sha256"}},
		{"v2", []string{"v", "2", "v2"}},
		{"Alarm_1_GetAlarms", []string{"alarm", "1", "get", "alarms", "getalarms"}},
		{"ALLCAPS word", []string{"allcaps", "word"}},
		{"Café déjà-vu", []string{"café", "déjà", "vu"}},
		{"", nil},
		{"  ,.;  ", nil},
		// Han script: overlapping bigrams; a lone character stays whole.
		{"查询天气", []string{"查询", "询天", "天气"}},
		{"北京的天气 weather", []string{"北京", "京的", "的天", "天气", "weather"}},
		{"猫", []string{"猫"}},
		{"API调用", []string{"api", "调用"}},
	}
	for _, tt := range tests {
		var got []string
		splitWords(tt.in, func(w string) { got = append(got, w) })
		if !slices.Equal(got, tt.want) {
			t.Errorf("splitWords(%q) = %q, want %q", tt.in, got, tt.want)
		}
	}
}

func TestAnalyzerTerms(t *testing.T) {
	tests := []struct {
		in   string
		want []string
	}{
		// Stemming: inflections meet.
		{"files filed filing", []string{"file", "file", "file"}},
		{"Creates the pull requests", []string{"creat", "pull", "request"}},
		{"configuration configure", []string{"configur", "configur"}},
		// Stop words and single letters go; numbers stay.
		{"What is the weather in Paris for me?", []string{"weather", "pari"}},
		{"the user's 3 files from 2024", []string{"user", "file", "2024"}},
		// Identifiers: split, stemmed per part, compound kept.
		{"get_stock_info", []string{"get", "stock", "info"}},
		{"listFiles", []string{"list", "file", "listfil"}},
		// Non-English words are kept as they are.
		{"天气", []string{"天气"}},
		// Over-long tokens (hashes, blobs) are dropped.
		{"id a3f9c2e1d4b5a6978877665544332211aabbccddeeff00112233", []string{"id"}},
	}
	for _, tt := range tests {
		var got []string
		(&analyzer{}).terms(tt.in, func(w string) { got = append(got, w) })
		if !slices.Equal(got, tt.want) {
			t.Errorf("terms(%q) = %q, want %q", tt.in, got, tt.want)
		}
	}
}

func TestAnalyzerCacheAgrees(t *testing.T) {
	cached := analyzer{cache: map[string]string{}}
	for _, text := range []string{"running runs ran", "running again", "getUserProfiles"} {
		var a, b []string
		cached.terms(text, func(w string) { a = append(a, w) })
		(&analyzer{}).terms(text, func(w string) { b = append(b, w) })
		if !slices.Equal(a, b) {
			t.Errorf("%q: cached %q, uncached %q", text, a, b)
		}
	}
}
