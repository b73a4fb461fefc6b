// Package runes cuts text by characters, not bytes, so that a cut never
// leaves half a character behind.
package runes

// Cut returns s cut to at most n runes.
func Cut(s string, n int) string {
	i := 0
	for k := range s {
		if i == n {
			return s[:k]
		}
		i++
	}
	return s
}
