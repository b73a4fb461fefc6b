package config

import (
	"errors"
	"fmt"
	"strings"
)

// ErrInvalid is wrapped by every error Parse, Load and Validate return for
// a configuration mistake (as opposed to an unreadable file), so callers can
// test errors.Is(err, ErrInvalid).
var ErrInvalid = errors.New("invalid configuration")

// fieldError is one mistake at a key path such as "backends[1].url". Its
// message is the path, ": " and the problem; it wraps ErrInvalid and, when
// it has one, the underlying cause.
type fieldError struct {
	path  string
	msg   string
	cause error
}

func (e *fieldError) Error() string {
	if e.path == "" {
		return e.msg
	}
	return e.path + ": " + e.msg
}

func (e *fieldError) Unwrap() []error {
	if e.cause != nil {
		return []error{ErrInvalid, e.cause}
	}
	return []error{ErrInvalid}
}

// Invalid returns a configuration mistake found outside Validate, by code
// that resolves or opens what the config names (an environment variable, a
// file): like Validate's errors it reads "path: " and err's message, and
// wraps both ErrInvalid and err. A joined err gives one problem per error,
// each under path.
func Invalid(path string, err error) error {
	if err == nil {
		return nil
	}
	return at(path, err)
}

// invalidf returns a problem with no path yet; callers add coordinates
// with at.
func invalidf(format string, args ...any) error {
	return &fieldError{msg: fmt.Sprintf(format, args...)}
}

// at prefixes coord to the path of every problem in err, so each layer of
// validation adds only its own coordinate: at("backends[1]", at("url", e))
// reads "backends[1].url: ...". A nil err stays nil.
func at(coord string, err error) error {
	switch e := err.(type) {
	case nil:
		return nil
	case *fieldError:
		return &fieldError{path: joinPath(coord, e.path), msg: e.msg, cause: e.cause}
	case interface{ Unwrap() []error }:
		var out []error
		for _, inner := range e.Unwrap() {
			out = append(out, at(coord, inner))
		}
		return errors.Join(out...)
	}
	return &fieldError{path: coord, msg: err.Error(), cause: err}
}

// joinPath appends a key path to a parent path: "a" + "b" is "a.b" and
// "a" + "[0].b" is "a[0].b".
func joinPath(parent, child string) string {
	switch {
	case parent == "":
		return child
	case child == "":
		return parent
	case strings.HasPrefix(child, "["):
		return parent + child
	}
	return parent + "." + child
}

// keyCoord is the coordinate of a user-chosen map key: ".name" when it reads
// well as a path segment, `["odd key"]` otherwise.
func keyCoord(key string) string {
	if key == "" || strings.ContainsAny(key, ".[]\" \t\n:") {
		return fmt.Sprintf("[%q]", key)
	}
	return key
}

// join flattens nested joins so the result lists one problem per line and
// its Unwrap() []error holds every problem directly.
func join(errs ...error) error {
	var flat []error
	var add func(error)
	add = func(err error) {
		switch e := err.(type) {
		case nil:
		case *fieldError:
			flat = append(flat, e)
		case interface{ Unwrap() []error }:
			for _, inner := range e.Unwrap() {
				add(inner)
			}
		default:
			flat = append(flat, err)
		}
	}
	for _, err := range errs {
		add(err)
	}
	return errors.Join(flat...)
}

// problems collects the errors of one validation layer.
type problems []error

// add records err, if any, under coord.
func (p *problems) add(coord string, err error) {
	if err != nil {
		*p = append(*p, at(coord, err))
	}
}

// addf records a new problem under coord.
func (p *problems) addf(coord, format string, args ...any) {
	*p = append(*p, at(coord, invalidf(format, args...)))
}

// err joins the recorded problems; nil when there are none.
func (p problems) err() error { return join(p...) }

// OutgoingAuthPath returns the key path of backend's outgoing auth, as
// validation errors spell it: "outgoingAuth.backends.github", or
// `outgoingAuth.backends["my.svc"]` for a name that is not a plain path
// segment.
func OutgoingAuthPath(backend string) string {
	return joinPath("outgoingAuth.backends", keyCoord(backend))
}
