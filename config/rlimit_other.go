//go:build !unix

package config

// defaultMaxConnections is the default of server.maxConnections where
// there is no open-file limit to size it by.
func defaultMaxConnections() int { return fallbackMaxConnections }
