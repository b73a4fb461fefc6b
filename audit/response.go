package audit

import (
	"bytes"
	"net/http"
	"strconv"
	"strings"
)

// response wraps the ResponseWriter of a recorded request. It counts the
// body bytes and watches them pass to learn how the request ended: for a
// JSON body the one JSON-RPC message, for an SSE body the last JSON-RPC
// response among its events. It keeps a fixed amount of state whatever the
// size of the response and never holds on to the bytes.
type response struct {
	w      http.ResponseWriter
	status int
	bytes  int64
	sse    bool
	line   sseLine
	scan   scanner
	last   message // the last complete response message seen
	seen   bool    // last is set
}

var _ http.Flusher = (*response)(nil)

func (r *response) Header() http.Header { return r.w.Header() }

func (r *response) WriteHeader(code int) {
	if r.status == 0 && code >= 200 {
		r.status = code
		r.sse = strings.HasPrefix(r.w.Header().Get("Content-Type"), "text/event-stream")
	}
	r.w.WriteHeader(code)
}

func (r *response) Write(p []byte) (int, error) {
	if r.status == 0 {
		r.WriteHeader(http.StatusOK)
	}
	n, err := r.w.Write(p)
	r.bytes += int64(n)
	if r.sse {
		r.feedSSE(p[:n])
	} else {
		r.scan.feed(p[:n])
	}
	return n, err
}

// Flush flushes the wrapped writer, through any writers it wraps in turn.
func (r *response) Flush() {
	if r.status == 0 {
		r.WriteHeader(http.StatusOK)
	}
	_ = http.NewResponseController(r.w).Flush()
}

// Unwrap lets http.ResponseController reach the connection's writer.
func (r *response) Unwrap() http.ResponseWriter { return r.w }

// outcome classifies the response: first by HTTP status, then by the
// JSON-RPC message it carried. reason is empty on success.
func (r *response) outcome() (Outcome, string) {
	status := r.status
	if status == 0 {
		status = http.StatusOK
	}
	switch {
	case status == http.StatusUnauthorized:
		return OutcomeUnauthenticated, "http 401"
	case status == http.StatusForbidden:
		return OutcomeForbidden, "http 403"
	case status == http.StatusTooManyRequests:
		return OutcomeRateLimited, "http 429"
	case status >= 500:
		return OutcomeBackendError, "http " + strconv.Itoa(status)
	case status >= 400:
		return OutcomeBadRequest, "http " + strconv.Itoa(status)
	}
	m, ok := r.message()
	switch {
	case ok && m.error:
		reason := "jsonrpc error " + strconv.Itoa(m.code)
		if clientErrorCode(m.code) {
			return OutcomeBadRequest, reason
		}
		return OutcomeBackendError, reason
	case ok && m.result && m.isError:
		return OutcomeToolError, ""
	case ok && m.result:
		return OutcomeSuccess, ""
	case status == http.StatusAccepted: // a notification or response, nothing to answer
		return OutcomeSuccess, ""
	}
	return OutcomeBackendError, "no response"
}

// message returns the JSON-RPC response the body carried, if any.
func (r *response) message() (message, bool) {
	if r.sse {
		r.endSSEEvent() // a stream cut before its blank line
		return r.last, r.seen
	}
	m := r.scan.msg
	return m, m.result || m.error
}

// clientErrorCode reports whether a JSON-RPC error code blames the request
// rather than the server or a backend.
func clientErrorCode(code int) bool {
	switch code {
	case -32700, // parse error
		-32600, // invalid request
		-32601, // method not found
		-32602, // invalid params
		-32002, // resource not found
		-32020, // header mismatch
		-32021, // missing required client capability
		-32022: // unsupported protocol version
		return true
	}
	return false
}

// sseLine is where the SSE parser is within the current line.
type sseLine struct {
	n    int  // bytes of the line so far, CR left out
	data bool // the line is a data field: its value goes to the scanner
	skip bool // the line is another field: ignored
}

const dataField = "data:"

// feedSSE follows the event stream: the values of data lines go to the
// JSON scanner, and a blank line ends an event.
func (r *response) feedSSE(p []byte) {
	for len(p) > 0 {
		l := &r.line
		if l.data || l.skip {
			end := bytes.IndexByte(p, '\n')
			seg := p
			if end >= 0 {
				seg = p[:end]
			}
			if l.data {
				r.scan.feed(seg)
			}
			l.n += len(seg)
			if end < 0 {
				return
			}
			p = p[end+1:]
			r.endSSELine()
			continue
		}
		c := p[0]
		p = p[1:]
		switch {
		case c == '\r':
		case c == '\n':
			r.endSSELine()
		case l.n < len(dataField) && c == dataField[l.n]:
			l.n++
			l.data = l.n == len(dataField)
		default:
			l.n++
			l.skip = true
		}
	}
}

var newline = []byte{'\n'}

// endSSELine ends the current line: a blank line ends the event, and data
// lines of one event join with a line feed.
func (r *response) endSSELine() {
	switch {
	case r.line.n == 0:
		r.endSSEEvent()
	case r.line.data:
		r.scan.feed(newline)
	}
	r.line = sseLine{}
}

// endSSEEvent keeps the message of the event just ended if it was a
// response (not a notification or a request to the client).
func (r *response) endSSEEvent() {
	if m := r.scan.msg; (m.result || m.error) && !m.method {
		r.last, r.seen = m, true
	}
	r.scan = scanner{}
}

// message is what the scanner learned of one JSON-RPC message.
type message struct {
	result, error, method bool
	isError               bool // result.isError is true
	code                  int  // error.code
}

// key names the object keys the scanner cares about.
type key uint8

const (
	keyOther key = iota
	keyResult
	keyError
	keyMethod
	keyIsError
	keyCode
)

func lookupKey(b []byte) key {
	switch string(b) {
	case "result":
		return keyResult
	case "error":
		return keyError
	case "method":
		return keyMethod
	case "isError":
		return keyIsError
	case "code":
		return keyCode
	}
	return keyOther
}

// maxDepth bounds the nesting the scanner tracks exactly; deeper levels
// cannot hold any key it looks for.
const maxDepth = 64

// scanner reads one JSON value a chunk at a time, tracking only what
// classifies a JSON-RPC message: the top-level result, error and method
// members, result.isError and error.code. It keeps no bytes but a key of
// up to 8 and skips string contents with bytes.IndexByte.
type scanner struct {
	depth     int
	objects   uint64 // bit d-1 set: the container at depth d is an object
	inString  bool
	escaped   bool
	isKey     bool // the current string is an object key
	expectKey bool // the next string in this object is a key
	keyBuf    [8]byte
	keyLen    int
	lastKey   key // the key just read, before its ':'
	pending   key // the key whose value comes next
	top       key // the top-level member being read
	literal   bool
	inCode    bool
	codeNeg   bool
	code      int
	msg       message
}

func (s *scanner) inObject() bool {
	return s.depth > 0 && s.depth <= maxDepth && s.objects&(1<<(s.depth-1)) != 0
}

func (s *scanner) feed(p []byte) {
	for i := 0; i < len(p); i++ {
		if s.inString {
			if s.escaped {
				s.escaped = false
				continue
			}
			if !s.isKey {
				// Skip to the closing quote or the next escape.
				rest := p[i:]
				q := bytes.IndexByte(rest, '"')
				scope := rest
				if q >= 0 {
					scope = rest[:q]
				}
				if b := bytes.IndexByte(scope, '\\'); b >= 0 {
					s.escaped = true
					i += b
					continue
				}
				if q < 0 {
					return
				}
				i += q
				s.inString = false
				continue
			}
			switch c := p[i]; c {
			case '\\':
				s.escaped = true
				s.keyLen = len(s.keyBuf) + 1 // an escaped key is none of ours
			case '"':
				s.inString = false
				s.lastKey = keyOther
				if s.keyLen <= len(s.keyBuf) {
					s.lastKey = lookupKey(s.keyBuf[:s.keyLen])
				}
			default:
				if s.keyLen < len(s.keyBuf) {
					s.keyBuf[s.keyLen] = c
				}
				if s.keyLen <= len(s.keyBuf) {
					s.keyLen++
				}
			}
			continue
		}
		c := p[i]
		if s.literal {
			if s.inCode && c >= '0' && c <= '9' {
				if s.code < 1<<24 {
					s.code = s.code*10 + int(c-'0')
				}
				continue
			}
			if !delimiter(c) {
				continue
			}
			s.endLiteral()
		}
		switch c {
		case ' ', '\t', '\n', '\r':
		case '"':
			s.inString = true
			s.isKey = s.expectKey && s.inObject()
			s.expectKey = false
			if s.isKey {
				s.keyLen = 0
			} else {
				s.value(c)
			}
		case '{', '[':
			s.value(c)
			s.depth++
			if s.depth <= maxDepth {
				bit := uint64(1) << (s.depth - 1)
				if c == '{' {
					s.objects |= bit
				} else {
					s.objects &^= bit
				}
			}
			s.expectKey = c == '{'
		case '}', ']':
			if s.depth > 0 {
				s.depth--
			}
			s.expectKey = false
		case ':':
			s.pending, s.lastKey = s.lastKey, keyOther
		case ',':
			s.expectKey = s.inObject()
		default:
			s.literal = true
			s.value(c)
		}
	}
}

func delimiter(c byte) bool {
	switch c {
	case ' ', '\t', '\n', '\r', ',', '}', ']', ':':
		return true
	}
	return false
}

func (s *scanner) endLiteral() {
	if s.inCode {
		s.msg.code = s.code
		if s.codeNeg {
			s.msg.code = -s.code
		}
	}
	s.literal, s.inCode = false, false
}

// value notes the start of a value (first byte c) at the current depth,
// the value of the key read last.
func (s *scanner) value(c byte) {
	k := s.pending
	s.pending = keyOther
	switch s.depth {
	case 1:
		s.top = k
		switch k {
		case keyResult:
			s.msg.result = true
		case keyError:
			s.msg.error = true
		case keyMethod:
			s.msg.method = true
		}
	case 2:
		switch {
		case s.top == keyResult && k == keyIsError && c == 't':
			s.msg.isError = true
		case s.top == keyError && k == keyCode && (c == '-' || c >= '0' && c <= '9'):
			s.inCode, s.codeNeg, s.code = true, c == '-', 0
			if c != '-' {
				s.code = int(c - '0')
			}
		}
	}
}
