//go:build tools

// Package tools pins the Pulumi CLI's module so `go build` resolves it from this go.mod.
package tools
