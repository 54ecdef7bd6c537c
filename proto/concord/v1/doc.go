// Package concordv1 holds the Go code generated from
// concord/v1/options.proto, Concord's service and method options, and the
// source of that file (OptionsProtoSource) for include directories.
package concordv1
