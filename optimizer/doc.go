// Package optimizer is the tool search index and the find_tool / call_tool tools.
//
// The index ranks a catalogue's tools against a task description with BM25F.
// Each tool is four weighted fields: its name and titles (×3), its
// description (×1), its input parameters' names (×1) and their descriptions,
// titles and string enum values (×0.5). Text is split on separators,
// camelCase and letter/digit boundaries (keeping the whole compound too),
// runs of Han, Kana and Thai script become character bigrams, Snowball stop
// words are dropped and English words are Snowball-stemmed. A word repeated
// in the description counts once; keywords add weight on top. A query word
// the catalogue never uses is matched, at half weight, to the catalogue words
// it begins or to the two halves of a closed compound.
//
// An [Index] is built once per catalogue and is read-only afterwards, so any
// number of sessions may Search it at once.
package optimizer
