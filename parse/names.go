package parse

import (
	"strconv"
	"unicode/utf8"
)

// MaxNameBytes is how much of a client's tool or prompt name, or resource
// URI, vmcp writes into an answer, a log line or an audit event; a longer
// one is cut (TruncateName). No catalogue name is that long.
const MaxNameBytes = 256

// TruncateName returns name cut to MaxNameBytes at a character boundary
// and marked with how much was left out, or name itself when it fits.
func TruncateName(name string) string {
	if len(name) <= MaxNameBytes {
		return name
	}
	cut := MaxNameBytes
	for cut > 0 && !utf8.RuneStart(name[cut]) {
		cut--
	}
	return name[:cut] + "…[" + strconv.Itoa(len(name)-cut) + " more bytes]"
}
