package config

import (
	"bytes"
	"os"
	"reflect"
	"strings"

	"github.com/go-viper/mapstructure/v2"
	"github.com/spf13/viper"
	"go.yaml.in/yaml/v3"
)

// Load reads the YAML file at path and parses it with Parse, taking
// environment overrides from the process environment. An unreadable file
// returns the os error; every configuration mistake wraps ErrInvalid.
func Load(path string) (*Config, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	return Parse(data, os.LookupEnv)
}

// Parse reads a YAML configuration, applies environment overrides (see
// EnvPrefix) looked up with getenv (nil means none), fills defaults with
// ApplyDefaults, validates the result and returns it.
//
// Decoding is strict: unknown keys, duplicate keys and values of the wrong
// type are errors naming the key and its line. Durations may be written as
// "1m" or {duration: 1m}; aggregation.tools[].workload is accepted for
// backend; sessionStorage with provider redis fills Redis when Redis is
// unset. An explicit "server.port: 0" is kept (a free port is picked at
// listen time) instead of taking the default, and so is an explicit
// "server.drainGrace: 0" (no grace before the listener closes). Every error wraps ErrInvalid;
// all problems of one stage are reported together.
func Parse(data []byte, getenv func(string) (string, bool)) (*Config, error) {
	doc, err := readDocument(data)
	if err != nil {
		return nil, err
	}
	canonical, err := yaml.Marshal(doc)
	if err != nil {
		return nil, &fieldError{msg: err.Error(), cause: err}
	}
	v := viper.New()
	v.SetConfigType("yaml")
	if err := v.ReadConfig(bytes.NewReader(canonical)); err != nil {
		return nil, &fieldError{msg: err.Error(), cause: err}
	}
	if err := applyEnv(v, getenv); err != nil {
		return nil, err
	}
	// viper lower-cases every key, including user-chosen ones such as
	// backend names and the variable names of backends[].env; take those
	// maps from the document instead.
	var raw map[string]any
	if err := doc.Decode(&raw); err != nil {
		return nil, &fieldError{msg: err.Error(), cause: err}
	}
	settings := v.AllSettings()
	restoreMaps(settings, raw, configType)

	cfg := new(Config)
	dec, err := mapstructure.NewDecoder(&mapstructure.DecoderConfig{
		DecodeHook:  durationHook,
		ErrorUnused: true,
		TagName:     "mapstructure",
		Result:      cfg,
	})
	if err != nil {
		return nil, err
	}
	if err := dec.Decode(settings); err != nil {
		return nil, &fieldError{msg: err.Error(), cause: err}
	}
	cfg.applyDefaults(v.IsSet)
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	cfg.foldSessionStorage()
	return cfg, nil
}

// readDocument parses data into a checked, canonical YAML document.
func readDocument(data []byte) (*yaml.Node, error) {
	var doc yaml.Node
	if err := yaml.Unmarshal(data, &doc); err != nil {
		return nil, &fieldError{msg: err.Error(), cause: err}
	}
	if len(doc.Content) == 0 || isNull(resolve(doc.Content[0])) {
		return nil, invalidf("config is empty")
	}
	if err := checkDocument(doc.Content[0]); err != nil {
		return nil, err
	}
	return &doc, nil
}

// restoreMaps walks settings (viper's lower-cased view) alongside raw (the
// document with its spelling intact) following struct type t. It replaces
// every map with user-chosen keys by the raw one, and adds the sections
// viper drops because they hold no value, such as "redis: {}".
func restoreMaps(settings, raw map[string]any, t reflect.Type) {
	for i := range t.NumField() {
		f := t.Field(i)
		name := tagName(f)
		key := strings.ToLower(name)
		rv, inRaw := raw[name]
		if !inRaw || rv == nil {
			continue
		}
		ft := f.Type
		if ft.Kind() == reflect.Pointer {
			ft = ft.Elem()
		}
		switch {
		case ft.Kind() == reflect.Map:
			settings[key] = rv
		case ft.Kind() == reflect.Struct:
			rm, ok := rv.(map[string]any)
			if !ok {
				continue
			}
			sm, ok := settings[key].(map[string]any)
			if !ok {
				sm = map[string]any{}
				settings[key] = sm
			}
			restoreMaps(sm, rm, ft)
		case ft.Kind() == reflect.Slice && ft.Elem().Kind() == reflect.Struct:
			rs, _ := rv.([]any)
			ss, _ := settings[key].([]any)
			for j := range min(len(rs), len(ss)) {
				rm, rok := rs[j].(map[string]any)
				sm, sok := ss[j].(map[string]any)
				if rok && sok {
					restoreMaps(sm, rm, ft.Elem())
				}
			}
		}
	}
}

// foldSessionStorage fills Redis from a sessionStorage section, the
// spelling other vMCP servers use, unless Redis is set.
func (c *Config) foldSessionStorage() {
	s := c.SessionStorage
	if c.Redis != nil || s == nil || s.Provider != sessionProviderRedis {
		return
	}
	c.Redis = &Redis{Address: s.Address, DB: s.DB, PasswordEnv: s.PasswordEnv}
}
