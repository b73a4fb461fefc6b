// Package sse reads server-sent event streams (text/event-stream) one
// event's data at a time, as MCP's streamable HTTP transport sends them:
// vmcp relays a backend's call stream to its client and listens to a
// backend session's GET stream with it.
package sse

import (
	"bufio"
	"bytes"
	"errors"
	"io"
	"strconv"
	"time"
)

// ErrTooLarge refuses an event whose data is over the Scanner's Max.
var ErrTooLarge = errors.New("event too large")

// Scanner reads the data of one event at a time; the id and retry fields
// are kept (for resuming the stream), other fields and comments skipped.
type Scanner struct {
	r    *bufio.Reader
	max  int
	data []byte
	// LastID is the id of the last event that had one; Retry the last
	// reconnection delay the stream asked for (at most 10 s).
	LastID string
	Retry  time.Duration
}

// NewScanner reads events from r, refusing one with more than max bytes of
// data.
func NewScanner(r *bufio.Reader, max int) *Scanner { return &Scanner{r: r, max: max} }

// Next returns the data of the next event with data, valid until the next
// call; the lines of an event with several data lines are joined with
// "\n". A data line longer than the reader's buffer is appended piece by
// piece, never copied twice. At the end of the stream it returns io.EOF.
func (s *Scanner) Next() ([]byte, error) {
	s.data = s.data[:0]
	for {
		line, err := s.r.ReadSlice('\n')
		if len(line) == 0 && err != nil {
			if err == io.EOF && len(s.data) > 0 {
				return s.data, nil
			}
			return nil, err
		}
		if v, ok := bytes.CutPrefix(line, []byte("data:")); ok {
			v = bytes.TrimPrefix(v, []byte(" "))
			if len(s.data) > 0 {
				s.data = append(s.data, '\n')
			}
			s.data = append(s.data, v...)
			for err == bufio.ErrBufferFull && len(s.data) <= s.max {
				line, err = s.r.ReadSlice('\n')
				s.data = append(s.data, line...)
			}
			if len(s.data) > s.max {
				return nil, ErrTooLarge
			}
			s.data = trimEOL(s.data)
		} else {
			field := line
			for err == bufio.ErrBufferFull { // a long line of another field
				_, err = s.r.ReadSlice('\n')
				field = nil
			}
			field = trimEOL(field)
			switch {
			case len(field) == 0 && line != nil && len(trimEOL(line)) == 0:
				if len(s.data) > 0 {
					return s.data, nil // a blank line ends the event
				}
			case bytes.HasPrefix(field, []byte("id:")):
				s.LastID = string(bytes.TrimPrefix(bytes.TrimPrefix(field, []byte("id:")), []byte(" ")))
			case bytes.HasPrefix(field, []byte("retry:")):
				if ms, perr := strconv.Atoi(string(bytes.TrimPrefix(bytes.TrimPrefix(field, []byte("retry:")), []byte(" ")))); perr == nil && ms >= 0 {
					s.Retry = min(time.Duration(ms)*time.Millisecond, 10*time.Second)
				}
			}
		}
		if err != nil && err != bufio.ErrBufferFull {
			if err == io.EOF && len(s.data) > 0 {
				return s.data, nil
			}
			return nil, err
		}
	}
}

// trimEOL drops a line's end: \n, \r\n or \r.
func trimEOL(b []byte) []byte {
	b = bytes.TrimSuffix(b, []byte("\n"))
	return bytes.TrimSuffix(b, []byte("\r"))
}

// Reset reads the rest of the stream from r (a resumed stream), keeping
// LastID and Retry.
func (s *Scanner) Reset(r io.Reader) { s.r.Reset(r) }
