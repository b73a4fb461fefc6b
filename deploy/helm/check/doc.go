// Package check lints and renders the Helm chart deploy/helm/vmcp offline,
// with Helm's own Go packages, and decodes every rendered object strictly
// into the k8s.io/api types. It is a tools module of its own (go.mod here)
// so Helm's dependencies do not move vmcp's; run it with
//
//	go -C deploy/helm/check test ./...
package check
