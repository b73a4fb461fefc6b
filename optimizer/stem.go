package optimizer

import "github.com/kljensen/snowball/english"

// stem reduces an English word to its Snowball (Porter2) stem, so "files",
// "filed" and "filing" meet. Words with anything but ASCII letters (numbers,
// identifiers like sha256, other languages) are returned as they are: the
// English rules would only mangle them.
func stem(w string) string {
	if !isASCIIWord(w) {
		return w
	}
	return english.Stem(w, true)
}

// isASCIIWord reports whether w is made only of the letters a-z.
func isASCIIWord(w string) bool {
	for i := 0; i < len(w); i++ {
		if c := w[i]; c < 'a' || c > 'z' {
			return false
		}
	}
	return true
}

// isStopWord reports whether w, lower-cased, is on the standard Snowball
// English stop-word list: function words (articles, pronouns, auxiliaries,
// prepositions) that say nothing about which tool is wanted but would add
// noise matches and dilute length normalisation.
func isStopWord(w string) bool {
	return english.IsStopWord(w)
}
