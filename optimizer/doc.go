// Package optimizer is the tool search index and the find_tool / call_tool tools.
//
// The index ranks a catalogue's tools against a task description with BM25F:
// each tool is three weighted fields (its name, its description, and the names,
// descriptions and enum values of its input parameters), tokenised on word,
// camelCase and letter/digit boundaries, stop-worded and Snowball-stemmed.
// An [Index] is built once per catalogue and is read-only afterwards, so any
// number of sessions may Search it at once.
package optimizer
