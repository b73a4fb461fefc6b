package optimizer

import (
	"strings"
	"unicode"
	"unicode/utf8"
)

// maxTokenRunes drops longer words, with their parts: they are hashes or
// encoded blobs, which no one types into a task description.
const maxTokenRunes = 40

// splitWords calls emit with each lower-cased word part of s, in order.
//
// Words are maximal runs of letters and digits; everything else separates
// them, so snake_case, kebab-case, dotted.names and paths/like/this split.
// Inside a word, parts break at camelCase humps (getUser, HTTPServer) and at
// letter/digit boundaries (sha256, v2); when a word breaks into several parts
// the whole word is emitted too, after its parts, so "JavaScript" in a query
// still meets "javascript" in a description (Lucene's preserveOriginal).
//
// Scripts written without spaces between words (Han, Hiragana, Katakana,
// Thai, Lao, Khmer, Myanmar) have no word boundaries to split on, so each run
// of them becomes overlapping character bigrams (a lone character stays a
// unigram), the standard dictionary-free approach for CJK retrieval.
func splitWords(s string, emit func(string)) {
	start := -1    // byte offset of the current letter/digit word, or -1
	cjkStart := -1 // byte offset of the current unsegmented-script run, or -1
	for i, r := range s {
		switch {
		case unsegmented(r):
			if start >= 0 {
				splitWord(s[start:i], emit)
				start = -1
			}
			if cjkStart < 0 {
				cjkStart = i
			}
		case unicode.IsLetter(r) || unicode.IsDigit(r) || unicode.Is(unicode.Mn, r):
			if cjkStart >= 0 {
				bigrams(s[cjkStart:i], emit)
				cjkStart = -1
			}
			if start < 0 {
				start = i
			}
		default:
			if start >= 0 {
				splitWord(s[start:i], emit)
				start = -1
			}
			if cjkStart >= 0 {
				bigrams(s[cjkStart:i], emit)
				cjkStart = -1
			}
		}
	}
	if start >= 0 {
		splitWord(s[start:], emit)
	}
	if cjkStart >= 0 {
		bigrams(s[cjkStart:], emit)
	}
}

// unsegmented reports whether r belongs to a script written without spaces
// between words.
func unsegmented(r rune) bool {
	if r < 0x0E00 { // fast path: Latin, Greek, Cyrillic, Arabic, Hebrew, Indic...
		return false
	}
	return unicode.In(r, unicode.Han, unicode.Hiragana, unicode.Katakana,
		unicode.Thai, unicode.Lao, unicode.Khmer, unicode.Myanmar)
}

// bigrams emits the overlapping two-character grams of run, or run itself
// when it is a single character.
func bigrams(run string, emit func(string)) {
	if utf8.RuneCountInString(run) == 1 {
		emit(run)
		return
	}
	prev := 0
	_, w := utf8.DecodeRuneInString(run)
	next := w
	for next < len(run) {
		_, w2 := utf8.DecodeRuneInString(run[next:])
		emit(run[prev : next+w2])
		prev, next = next, next+w2
	}
}

type runeClass uint8

const (
	classLower runeClass = iota // lower-case letters and letters without case
	classUpper
	classDigit
)

func classOf(r rune) runeClass {
	switch {
	case unicode.IsDigit(r):
		return classDigit
	case unicode.IsUpper(r):
		return classUpper
	default:
		return classLower
	}
}

// splitWord emits the lower-cased camelCase and letter/digit parts of a word
// made only of letters and digits, then the whole word if it had several.
func splitWord(word string, emit func(string)) {
	if utf8.RuneCountInString(word) > maxTokenRunes {
		return // a hash or blob: its pieces are noise too
	}
	parts := 0
	partStart := 0
	var prev, cur runeClass
	prevSet := false
	for i, r := range word {
		cur = classOf(r)
		if prevSet && i > partStart {
			boundary := false
			switch {
			case (prev == classDigit) != (cur == classDigit):
				boundary = true // letter/digit: sha256, v2, 3d
			case prev == classLower && cur == classUpper:
				boundary = true // getUser
			case prev == classUpper && cur == classUpper:
				// HTTPServer: break before the S, which starts a lower-case run.
				if rest := word[i+utf8.RuneLen(r):]; rest != "" {
					nr, _ := utf8.DecodeRuneInString(rest)
					boundary = classOf(nr) == classLower
				}
			}
			if boundary {
				emit(strings.ToLower(word[partStart:i]))
				parts++
				partStart = i
			}
		}
		prev, prevSet = cur, true
	}
	if parts == 0 {
		emit(strings.ToLower(word))
		return
	}
	emit(strings.ToLower(word[partStart:]))
	emit(strings.ToLower(word))
}

// analyzer turns text into index terms: split, drop what carries no meaning,
// stem. Its stem cache makes it unsafe for concurrent use; the index builds
// with one and each Search uses a fresh, cache-less one.
type analyzer struct {
	cache  map[string]string // surface form -> term; nil: no cache
	noStop bool              // keep stop words (ablation only)
	noStem bool              // do not stem (ablation only)
}

// terms calls emit with each index term of text.
func (a *analyzer) terms(text string, emit func(term string)) {
	splitWords(text, func(w string) {
		if t, ok := a.term(w); ok {
			emit(t)
		}
	})
}

// term maps one lower-cased word part to its index term, or reports false
// when the part is dropped.
func (a *analyzer) term(w string) (string, bool) {
	if utf8.RuneCountInString(w) == 1 {
		// A single Latin letter or digit is noise ("s" of "user's", "a", "1");
		// a single CJK character is a word.
		r, _ := utf8.DecodeRuneInString(w)
		if !unsegmented(r) {
			return "", false
		}
		return w, true
	}
	if !a.noStop && isStopWord(w) {
		return "", false
	}
	if a.cache != nil {
		if t, ok := a.cache[w]; ok {
			return t, true
		}
	}
	t := w
	if !a.noStem {
		t = stem(w)
	}
	if a.cache != nil {
		a.cache[w] = t
	}
	return t, true
}
