package jsonrpc

import (
	"bytes"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"math/bits"
)

// ErrSyntax is wrapped by every error of the scanner: the input is not
// well-formed JSON.
var ErrSyntax = errors.New("invalid JSON")

// The scanner below reads the members of a JSON object without decoding
// their values: a value is skipped by finding where it ends, strings with
// bytes.IndexByte, so the cost of a message does not grow with the work of
// decoding what vmcp only relays. It checks the structure of what it skips
// (brackets, strings, commas, colons, literals, the characters of numbers);
// it does not check escapes inside strings or UTF-8, which the receiver of
// the bytes does.

// SkipSpace returns the index of the first byte at or after i that is not
// JSON white space.
func SkipSpace(b []byte, i int) int {
	for i < len(b) {
		switch b[i] {
		case ' ', '\t', '\r', '\n':
			i++
		default:
			return i
		}
	}
	return i
}

// SkipValue returns the index just past the JSON value that starts at b[i]
// (white space before it is skipped).
func SkipValue(b []byte, i int) (int, error) {
	return skipValue(b, SkipSpace(b, i), 0)
}

// maxDepth bounds nesting, as encoding/json does (10000), so a hostile
// message cannot exhaust the stack.
const maxDepth = 10000

func skipValue(b []byte, i, depth int) (int, error) {
	if i >= len(b) {
		return i, fmt.Errorf("%w: unexpected end of input", ErrSyntax)
	}
	switch c := b[i]; {
	case c == '"':
		return skipString(b, i)
	case c == '{':
		if depth >= maxDepth {
			return i, fmt.Errorf("%w: nested too deeply", ErrSyntax)
		}
		end := i
		err := eachMember(b, i, depth+1, func(_, _ []byte, _, after int) bool { end = after; return true })
		if err != nil {
			return i, err
		}
		return end, nil
	case c == '[':
		if depth >= maxDepth {
			return i, fmt.Errorf("%w: nested too deeply", ErrSyntax)
		}
		i = SkipSpace(b, i+1)
		if i < len(b) && b[i] == ']' {
			return i + 1, nil
		}
		for {
			end, err := skipValue(b, SkipSpace(b, i), depth+1)
			if err != nil {
				return end, err
			}
			i = SkipSpace(b, end)
			if i >= len(b) {
				return i, fmt.Errorf("%w: unterminated array", ErrSyntax)
			}
			switch b[i] {
			case ',':
				i++
			case ']':
				return i + 1, nil
			default:
				return i, fmt.Errorf("%w: unexpected %q in array", ErrSyntax, b[i])
			}
		}
	case c == 't':
		return literal(b, i, "true")
	case c == 'f':
		return literal(b, i, "false")
	case c == 'n':
		return literal(b, i, "null")
	case c == '-' || (c >= '0' && c <= '9'):
		return skipNumber(b, i)
	default:
		return i, fmt.Errorf("%w: unexpected %q", ErrSyntax, c)
	}
}

func literal(b []byte, i int, word string) (int, error) {
	if !bytes.HasPrefix(b[i:], []byte(word)) {
		return i, fmt.Errorf("%w: unexpected %q", ErrSyntax, b[i])
	}
	return i + len(word), nil
}

// skipString returns the index just past the string that starts at b[i]
// (a '"'). It refuses control characters and malformed escapes, as
// encoding/json does; it reads eight bytes at a time until one of them is
// a quote, a backslash or a control character.
func skipString(b []byte, i int) (int, error) {
	j := i + 1
	for {
		for j+8 <= len(b) {
			if m := special(binary.LittleEndian.Uint64(b[j:])); m != 0 {
				// The lowest marked byte is the first special one.
				j += bits.TrailingZeros64(m) >> 3
				break
			}
			j += 8
		}
		if j >= len(b) {
			return len(b), fmt.Errorf("%w: unterminated string", ErrSyntax)
		}
		switch c := b[j]; {
		case c == '"':
			return j + 1, nil
		case c == '\\':
			if j+1 >= len(b) {
				return len(b), fmt.Errorf("%w: unterminated string", ErrSyntax)
			}
			switch b[j+1] {
			case '"', '\\', '/', 'b', 'f', 'n', 'r', 't':
				j += 2
			case 'u':
				if j+6 > len(b) || !isHex(b[j+2]) || !isHex(b[j+3]) || !isHex(b[j+4]) || !isHex(b[j+5]) {
					return j, fmt.Errorf("%w: malformed \\u escape in string", ErrSyntax)
				}
				j += 6
			default:
				return j, fmt.Errorf("%w: invalid escape in string", ErrSyntax)
			}
		case c < 0x20:
			return j, fmt.Errorf("%w: control character in string", ErrSyntax)
		default:
			j++
		}
	}
}

// special marks (with the byte's high bit) the bytes of w, read little
// endian, that may be a quote, a backslash or below 0x20, with the bit
// tricks of "Bit Twiddling Hacks" (haszero, hasless). Bytes above a marked
// one may be marked wrongly; the lowest mark is always right, and zero
// means none.
func special(w uint64) uint64 {
	const ones, highs = 0x0101010101010101, 0x8080808080808080
	quote := w ^ (ones * '"')
	slash := w ^ (ones * '\\')
	return ((quote-ones)&^quote | (slash-ones)&^slash | (w-ones*0x20)&^w) & highs
}

func isHex(c byte) bool {
	return (c >= '0' && c <= '9') || (c >= 'a' && c <= 'f') || (c >= 'A' && c <= 'F')
}

// skipNumber returns the index just past the number that starts at b[i],
// following JSON's grammar: -?(0|[1-9][0-9]*)(.[0-9]+)?([eE][+-]?[0-9]+)?
func skipNumber(b []byte, i int) (int, error) {
	j := i
	if j < len(b) && b[j] == '-' {
		j++
	}
	switch {
	case j < len(b) && b[j] == '0':
		j++
	case j < len(b) && b[j] >= '1' && b[j] <= '9':
		j = digits(b, j)
	default:
		return j, errNumber
	}
	if j < len(b) && b[j] == '.' {
		k := digits(b, j+1)
		if k == j+1 {
			return k, errNumber
		}
		j = k
	}
	if j < len(b) && (b[j] == 'e' || b[j] == 'E') {
		j++
		if j < len(b) && (b[j] == '+' || b[j] == '-') {
			j++
		}
		k := digits(b, j)
		if k == j {
			return k, errNumber
		}
		j = k
	}
	return j, nil
}

var errNumber = fmt.Errorf("%w: malformed number", ErrSyntax)

func digits(b []byte, j int) int {
	for j < len(b) && b[j] >= '0' && b[j] <= '9' {
		j++
	}
	return j
}

// EachMember calls fn for every member of the JSON object that starts at
// b[i] (white space before it is skipped), in order, with its key as
// written (quotes included; see Key), its value (a slice of b) and the
// index just past the value, until fn returns false. The members after the
// one fn stopped at are not checked.
func EachMember(b []byte, i int, fn func(key, value []byte, at, after int) bool) error {
	i = SkipSpace(b, i)
	if i >= len(b) || b[i] != '{' {
		return fmt.Errorf("%w: not an object", ErrSyntax)
	}
	return eachMember(b, i, 1, fn)
}

func eachMember(b []byte, i, depth int, fn func(key, value []byte, at, after int) bool) error {
	i = SkipSpace(b, i+1)
	if i < len(b) && b[i] == '}' {
		fn(nil, nil, i, i+1)
		return nil
	}
	for {
		if i >= len(b) || b[i] != '"' {
			return fmt.Errorf("%w: object key expected", ErrSyntax)
		}
		kend, err := skipString(b, i)
		if err != nil {
			return err
		}
		key := b[i:kend]
		i = SkipSpace(b, kend)
		if i >= len(b) || b[i] != ':' {
			return fmt.Errorf("%w: ':' expected after object key", ErrSyntax)
		}
		at := SkipSpace(b, i+1)
		end, err := skipValue(b, at, depth)
		if err != nil {
			return err
		}
		i = SkipSpace(b, end)
		if i >= len(b) {
			return fmt.Errorf("%w: unterminated object", ErrSyntax)
		}
		switch b[i] {
		case ',':
			if !fn(key, b[at:end], at, end) {
				return nil
			}
			i = SkipSpace(b, i+1)
		case '}':
			if !fn(key, b[at:end], at, i+1) {
				return nil
			}
			return nil
		default:
			return fmt.Errorf("%w: unexpected %q in object", ErrSyntax, b[i])
		}
	}
}

// Key returns the text of a key as EachMember hands it over (quoted). Keys
// without escapes, nearly all, cost no allocation.
func Key(quoted []byte) string {
	if len(quoted) < 2 {
		return ""
	}
	inner := quoted[1 : len(quoted)-1]
	if bytes.IndexByte(inner, '\\') < 0 {
		return string(inner)
	}
	var s string
	if json.Unmarshal(quoted, &s) != nil {
		return string(inner)
	}
	return s
}

// KeyText returns a key's text between its quotes when it has no escape,
// and the decoded text otherwise.
func KeyText(quoted []byte) []byte {
	if len(quoted) >= 2 && bytes.IndexByte(quoted, '\\') < 0 {
		return quoted[1 : len(quoted)-1]
	}
	return []byte(Key(quoted))
}

// KeyIs reports whether a quoted key as EachMember hands it over is name.
func KeyIs(quoted []byte, name string) bool {
	if len(quoted) == len(name)+2 && string(quoted[1:len(quoted)-1]) == name {
		return true
	}
	return bytes.IndexByte(quoted, '\\') >= 0 && Key(quoted) == name
}

// Envelope locates the top-level members of one JSON-RPC message. Each
// field is the member's value as written (a slice of the message), nil
// when the member is absent.
type Envelope struct {
	JSONRPC, ID, Method, Params, Result, Error []byte
}

// ScanEnvelope reads the top-level members of msg, a JSON-RPC message,
// without decoding params, result or error. It fails on malformed JSON, a
// message that is not an object, and an envelope member that is ambiguous
// (Members): two readers of the message could take different ones.
func ScanEnvelope(msg []byte) (Envelope, error) {
	var (
		e   Envelope
		out [6][]byte
	)
	end, err := members(msg, envelopeKeys[:], out[:])
	if err == nil && SkipSpace(msg, end) != len(msg) {
		err = fmt.Errorf("%w: data after the message", ErrSyntax)
	}
	e.JSONRPC, e.ID, e.Method, e.Params, e.Result, e.Error = out[0], out[1], out[2], out[3], out[4], out[5]
	return e, err
}

var envelopeKeys = [6]string{"jsonrpc", "id", "method", "params", "result", "error"}

// Members reads the members of the JSON object obj named in names into
// out (out[i] is the value of names[i], a slice of obj; nil when absent)
// without decoding them. It fails on malformed JSON and on an ambiguous
// member, wrapping ErrDuplicateKey and leaving that member's value out:
// one of names twice, or a key that is not one of names but equals one of
// them ignoring case (encoding/json, and so many a backend, matches keys
// that way, Unicode folding included: "NAME", "ſcope"), since two readers
// of obj could then take different values.
func Members(obj []byte, names []string, out [][]byte) error {
	_, err := members(obj, names, out)
	return err
}

// members is Members, also returning the index just past obj.
func members(obj []byte, names []string, out [][]byte) (int, error) {
	var (
		end int
		bad error
	)
	err := EachMember(obj, 0, func(key, value []byte, _, after int) bool {
		end = after
		if key == nil {
			return true
		}
		text := KeyText(key)
		for i, name := range names {
			if string(text) == name {
				if out[i] != nil {
					out[i] = nil // which one counts is not known
					bad = fmt.Errorf("%w: key %q appears twice", ErrDuplicateKey, name)
					return false
				}
				out[i] = value
				return true
			}
		}
		for i, name := range names {
			if bytes.EqualFold(text, []byte(name)) {
				out[i] = nil // which one counts is not known
				bad = fmt.Errorf("%w: key %q is %q in another case", ErrDuplicateKey, text, name)
				return false
			}
		}
		return true
	})
	if err != nil {
		return end, err
	}
	return end, bad
}

// FindID returns the top-level id of msg, a JSON-RPC message, reading no
// further than it: a response that starts with its id (as most servers
// write them) costs the same whatever the size of its result. It fails
// when msg has no id or is malformed up to it.
func FindID(msg []byte) ([]byte, error) {
	var id []byte
	err := EachMember(msg, 0, func(key, value []byte, _, _ int) bool {
		if key != nil && KeyIs(key, "id") {
			id = value
			return false
		}
		return true
	})
	if err == nil && id == nil {
		err = fmt.Errorf("%w: no id", ErrSyntax)
	}
	return id, err
}

// ErrDuplicateKey is wrapped when a member vmcp reads appears twice.
var ErrDuplicateKey = errors.New("invalid JSON-RPC message")

// Splice returns msg with the value part (a slice of msg) replaced by
// with, in a new slice.
func Splice(msg, part, with []byte) []byte {
	at, ok := OffsetIn(msg, part)
	if !ok {
		panic("jsonrpc.Splice: part is not a slice of msg")
	}
	out := make([]byte, 0, len(msg)-len(part)+len(with))
	out = append(out, msg[:at]...)
	out = append(out, with...)
	return append(out, msg[at+len(part):]...)
}

// OffsetIn returns where sub starts in b when sub is a non-empty slice of
// b's array lying within b.
func OffsetIn(b, sub []byte) (int, bool) {
	at := cap(b) - cap(sub)
	if len(sub) == 0 || at < 0 || at+len(sub) > len(b) || &b[at] != &sub[0] {
		return 0, false
	}
	return at, true
}
