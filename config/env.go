package config

import (
	"reflect"
	"strconv"
	"strings"

	"github.com/spf13/viper"
)

// EnvPrefix starts every environment override. The rest of the variable
// name is a scalar key path in upper case with "_" between levels:
// VMCP_SERVER_PORT sets server.port, VMCP_SERVER_MAXBODYBYTES sets
// server.maxBodyBytes and VMCP_REDIS_ADDRESS sets redis.address (creating
// the redis section if the file has none). A list of strings is written
// comma-separated: VMCP_SERVER_ALLOWEDHOSTS=vmcp.example.com,10.0.0.5:4483.
const EnvPrefix = "VMCP_"

// envKey is one scalar key an environment variable may override.
type envKey struct {
	path string // e.g. server.maxBodyBytes
	env  string // e.g. VMCP_SERVER_MAXBODYBYTES
	typ  reflect.Type
}

// envKeys lists the scalar keys and the lists of strings under struct type
// t. Structs and pointers to structs are entered; lists of structs and maps
// are not, since their elements have no fixed key.
func envKeys(t reflect.Type, path string) []envKey {
	var keys []envKey
	for i := range t.NumField() {
		f := t.Field(i)
		p := joinPath(path, tagName(f))
		ft := f.Type
		if ft.Kind() == reflect.Pointer {
			ft = ft.Elem()
		}
		switch {
		case ft == durationType, ft.Kind() == reflect.String, ft.Kind() == reflect.Bool,
			ft.Kind() >= reflect.Int && ft.Kind() <= reflect.Int64,
			ft.Kind() == reflect.Float32 || ft.Kind() == reflect.Float64,
			ft.Kind() == reflect.Slice && ft.Elem().Kind() == reflect.String:
			env := EnvPrefix + strings.ToUpper(strings.ReplaceAll(p, ".", "_"))
			keys = append(keys, envKey{path: p, env: env, typ: ft})
		case ft.Kind() == reflect.Struct:
			keys = append(keys, envKeys(ft, p)...)
		}
	}
	return keys
}

// applyEnv sets on v every key whose variable getenv reports with a
// non-empty value, as viper does by default. Each text is converted to the
// key's type here, so a bad value is reported against its key.
func applyEnv(v *viper.Viper, getenv func(string) (string, bool)) error {
	if getenv == nil {
		return nil
	}
	var p problems
	for _, k := range envKeys(configType, "") {
		text, ok := getenv(k.env)
		if !ok || text == "" {
			continue
		}
		val, err := envValue(text, k.typ)
		if err != nil {
			p.addf(k.path, "%v from %s", err, k.env)
			continue
		}
		v.Set(k.path, val)
	}
	return p.err()
}

// envValue converts the text of a variable to a value of type t.
func envValue(text string, t reflect.Type) (any, error) {
	switch {
	case t == durationType:
		if _, err := parseDuration(text); err != nil {
			return nil, err
		}
		return text, nil
	case t.Kind() == reflect.Bool:
		b, err := strconv.ParseBool(text)
		if err != nil {
			return nil, invalidf("invalid boolean %q", text)
		}
		return b, nil
	case t.Kind() == reflect.String:
		return text, nil
	case t.Kind() == reflect.Float32 || t.Kind() == reflect.Float64:
		f, err := strconv.ParseFloat(text, t.Bits())
		if err != nil {
			return nil, invalidf("invalid number %q", text)
		}
		return f, nil
	case t.Kind() == reflect.Slice:
		var list []string
		for _, item := range strings.Split(text, ",") {
			if item = strings.TrimSpace(item); item != "" {
				list = append(list, item)
			}
		}
		return list, nil
	}
	n, err := strconv.ParseInt(text, 10, t.Bits())
	if err != nil {
		return nil, invalidf("invalid integer %q", text)
	}
	return n, nil
}
