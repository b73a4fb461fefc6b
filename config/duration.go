package config

import (
	"reflect"
	"strings"
	"time"
)

// String formats d like time.Duration, e.g. "1m0s".
func (d Duration) String() string { return time.Duration(d).String() }

// MarshalText writes d as a Go duration string.
func (d Duration) MarshalText() ([]byte, error) { return []byte(d.String()), nil }

// UnmarshalText reads a Go duration string such as "1m" or "30s".
func (d *Duration) UnmarshalText(text []byte) error {
	v, err := parseDuration(string(text))
	if err != nil {
		return err
	}
	*d = v
	return nil
}

// parseDuration reads a Go duration string; the error names the value.
func parseDuration(s string) (Duration, error) {
	v, err := time.ParseDuration(strings.TrimSpace(s))
	if err != nil {
		return 0, invalidf("invalid duration %q", s)
	}
	return Duration(v), nil
}

// durationKey is the one key of the map form {duration: 1m}.
const durationKey = "duration"

var durationType = reflect.TypeOf(Duration(0))

// durationHook decodes a Duration from "1m" or {duration: 1m}. The shape was
// checked against the YAML document before decoding; this only converts.
func durationHook(_ reflect.Type, to reflect.Type, data any) (any, error) {
	if to != durationType {
		return data, nil
	}
	switch v := data.(type) {
	case string:
		return parseDuration(v)
	case map[string]any:
		for k, inner := range v {
			if strings.EqualFold(k, durationKey) {
				return durationHook(nil, to, inner)
			}
		}
	}
	return nil, invalidf("invalid duration %v", data)
}
