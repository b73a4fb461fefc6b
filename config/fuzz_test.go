package config

import (
	"encoding/json"
	"errors"
	"reflect"
	"strings"
	"testing"
	"time"
	"unicode"
	"unicode/utf8"
)

// Fuzz targets for the text config reads from operators: durations and
// VMCP_ environment overrides. Plain go test runs the seeds;
// docs/architecture.md ("Fuzzing") says how to run them longer.

// FuzzDuration: a duration reads exactly as time.ParseDuration reads it
// (spaces around it aside), round-trips through its own text, and a bad
// one is an ErrInvalid naming the value; in a config file, as a string or
// as {duration: ...}, the same text gives the same value, or an error at
// its key path.
func FuzzDuration(f *testing.F) {
	for _, s := range []string{"1m", "30s", " 1m ", "1h2m3.5s", "0", "-5s", "1x", "", "1e3s", "9223372036854775807ns", "9999999h", ".5s", "1µs", "1us", "+1s", "1m\n"} {
		f.Add(s, false)
	}
	f.Add("100ms", true)
	f.Fuzz(func(t *testing.T, s string, mapForm bool) {
		var d Duration
		err := d.UnmarshalText([]byte(s))
		ref, rerr := time.ParseDuration(strings.TrimSpace(s))
		if (err == nil) != (rerr == nil) || (err == nil && d.D() != ref) {
			t.Fatalf("UnmarshalText(%q) = %v, %v; time.ParseDuration = %v, %v", s, d, err, ref, rerr)
		}
		if err != nil {
			if !errors.Is(err, ErrInvalid) || !strings.Contains(err.Error(), "invalid duration") {
				t.Fatalf("UnmarshalText(%q) error %q: want an ErrInvalid saying invalid duration", s, err)
			}
		} else {
			text, _ := d.MarshalText()
			var back Duration
			if err := back.UnmarshalText(text); err != nil || back != d {
				t.Fatalf("%q reads %v, written %q, which reads %v, %v", s, d, text, back, err)
			}
		}

		if !printable(s) {
			return // YAML has no way to write it
		}
		quoted, _ := json.Marshal(s) // a JSON string is a YAML double-quoted scalar
		value := string(quoted)
		if mapForm {
			value = "{duration: " + value + "}"
		}
		cfg, perr := Parse([]byte(oneBackend+"rateLimiting: {checkTimeout: "+value+"}\n"), nil)
		switch {
		case err != nil || perr != nil:
			if perr == nil {
				t.Fatalf("checkTimeout %s: Parse accepted what UnmarshalText refuses (%v)", value, err)
			}
			for _, p := range problemsOf(perr) {
				if !errors.Is(p, ErrInvalid) || !strings.HasPrefix(p.Error(), "rateLimiting.checkTimeout") {
					t.Fatalf("checkTimeout %s: problem %q, want an ErrInvalid at rateLimiting.checkTimeout", value, p)
				}
			}
		case d == 0:
			if cfg.RateLimiting.CheckTimeout != defaultCheckTimeout {
				t.Fatalf("checkTimeout %s = %v, want the default %v", value, cfg.RateLimiting.CheckTimeout, defaultCheckTimeout)
			}
		case cfg.RateLimiting.CheckTimeout != d:
			t.Fatalf("checkTimeout %s = %v, want %v", value, cfg.RateLimiting.CheckTimeout, d)
		}
	})
}

// FuzzEnvOverride sets one VMCP_ variable (the key chosen by index) to
// value over the smallest config: an empty value changes nothing; a value
// that does not convert to the key's type is an error naming the key path
// and the variable; every error is an ErrInvalid; and a value that
// converts and loads is the key's value (a zero number or duration may be
// replaced by its default).
func FuzzEnvOverride(f *testing.F) {
	keys := envKeys(configType, "")
	for i, k := range keys {
		switch {
		case k.typ == durationType:
			f.Add(uint16(i), "2s")
			f.Add(uint16(i), "2 s")
		case k.typ.Kind() == reflect.Bool:
			f.Add(uint16(i), "true")
			f.Add(uint16(i), "yes")
		case k.typ.Kind() == reflect.String:
			f.Add(uint16(i), "x")
		case k.typ.Kind() == reflect.Slice:
			f.Add(uint16(i), "a.example, b.example:4483,,")
		default:
			f.Add(uint16(i), "42")
			f.Add(uint16(i), "4x")
		}
	}
	f.Add(uint16(0), "")
	base, err := Parse([]byte(oneBackend), nil)
	if err != nil {
		f.Fatal(err)
	}
	f.Fuzz(func(t *testing.T, index uint16, value string) {
		k := keys[int(index)%len(keys)]
		cfg, err := Parse([]byte(oneBackend), envOf(map[string]string{k.env: value}))
		if err != nil {
			for _, p := range problemsOf(err) {
				if !errors.Is(p, ErrInvalid) {
					t.Fatalf("%s=%q: problem %q does not wrap ErrInvalid", k.env, value, p)
				}
			}
		}
		if value == "" {
			if err != nil || !reflect.DeepEqual(cfg, base) {
				t.Fatalf("%s empty changed the config: %v", k.env, err)
			}
			return
		}
		want, cerr := envValue(value, k.typ)
		if cerr != nil {
			if err == nil || !strings.Contains(err.Error(), k.path+": ") || !strings.Contains(err.Error(), k.env) {
				t.Fatalf("%s=%q does not convert (%v), but Parse = %v; want an error naming %s and %s", k.env, value, cerr, err, k.path, k.env)
			}
			return
		}
		if err != nil {
			return // converted, but not a valid config (validation named it)
		}
		got, ok := fieldAt(reflect.ValueOf(cfg).Elem(), k.path)
		if !ok {
			t.Fatalf("%s=%q loaded, but %s is not in the config", k.env, value, k.path)
		}
		if !sameValue(got, want, k.typ) {
			t.Fatalf("%s=%q: %s = %#v, want %#v", k.env, value, k.path, got.Interface(), want)
		}
	})
}

// printable reports whether s is valid UTF-8 of printable characters, which
// a YAML document may hold.
func printable(s string) bool {
	if !utf8.ValidString(s) {
		return false
	}
	for _, r := range s {
		if !unicode.IsPrint(r) || r == '\ufeff' {
			return false
		}
	}
	return true
}

// fieldAt returns the field at a dotted key path of v, following pointers.
func fieldAt(v reflect.Value, path string) (reflect.Value, bool) {
	for _, seg := range strings.Split(path, ".") {
		if v.Kind() == reflect.Pointer {
			if v.IsNil() {
				return reflect.Value{}, false
			}
			v = v.Elem()
		}
		found := false
		for i := range v.NumField() {
			if tagName(v.Type().Field(i)) == seg {
				v, found = v.Field(i), true
				break
			}
		}
		if !found {
			return reflect.Value{}, false
		}
	}
	if v.Kind() == reflect.Pointer {
		if v.IsNil() {
			return reflect.Value{}, false
		}
		v = v.Elem()
	}
	return v, true
}

// sameValue compares a loaded field with the value envValue converted for
// its type; a zero number or duration matches any value (defaults fill it).
func sameValue(got reflect.Value, want any, typ reflect.Type) bool {
	switch {
	case typ == durationType:
		d, _ := parseDuration(want.(string))
		return d == 0 || Duration(got.Int()) == d
	case typ.Kind() == reflect.Bool:
		return got.Bool() == want.(bool)
	case typ.Kind() == reflect.String:
		return got.String() == want.(string)
	case typ.Kind() == reflect.Slice:
		list, _ := want.([]string)
		return reflect.DeepEqual(append([]string{}, got.Interface().([]string)...), append([]string{}, list...))
	}
	n := want.(int64)
	return n == 0 || got.Int() == n
}
