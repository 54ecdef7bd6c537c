// Package config is Concord's dynamic configuration: named configs whose
// values are protobuf messages, validated by their protovalidate rules
// before they are stored, versioned, watched live and rolled back.
//
// # Storage
//
// Every config is one key of the cluster's config bucket
// (coord.BucketConfig); every version is one message on that key's
// subject, whose data is a JSON envelope holding the message's full type
// name, its protobuf binary encoding, the writer's name and the write
// time. A version's number is the message's stream sequence: versions of
// one config increase but are not consecutive. The bucket keeps the last
// HistoryDepth (16) versions of each config; older ones are gone.
//
// # Writes (Store)
//
// Store.Set validates the value with protovalidate (a violation is
// ErrInvalid with the violations' text, and nothing is written), checks
// that it is of the config's type (fixed by its first version; another
// type is ErrInvalid) and writes it with one conditional publish that
// names the version it replaces: 0 for "only if the config has no
// version". A write that lost the race is ErrConflict naming the current
// version, so two operators cannot silently overwrite each other; only
// conditional writes are authoritative (on a cluster a plain read may be
// stale). A write that times out is read back: the writer learns it was
// stored (its nonce is there), lost (ErrConflict), or that the outcome is
// unknown (a plain error: read with Get before retrying). Writes are
// acknowledged once on disk (see coord). Store.Rollback writes a kept
// version's value again as a new version, validated again against the
// rules the binary has now. Store.History lists the kept versions with
// their writers and times.
//
// # Reads (Handle)
//
// A Handle is a typed, live view of one config: New[T] (or concord.Config
// on an App) starts it in the background. Handle.Get returns the current
// value from an atomic pointer: it never blocks and never touches the
// network. Until a value exists Get returns the default given to New.
//
// At start the Handle loads the last value it kept in the local store
// (Badger), so a process that starts while coordination is down starts
// with its last known value; then it watches the config on the cluster
// (the watch starts with the latest version) and keeps every new value in
// the local store as it arrives, and once more when the Handle closes.
// When the watch ends (the node's connection closed, the App replaced its
// node) the Handle asks its Backend for the node again and re-establishes
// the watch, retrying with a bounded backoff (100 ms doubling to 5 s)
// until Close. During an outage Get keeps returning the last value seen.
//
// Handle.Watch delivers the current value, then every version the Handle
// sees, in increasing version order and without duplicates. When the
// Handle (re)starts its watch while it already has a version, it first
// catches up on the kept versions written since, so a watcher also
// receives the versions written during an outage, up to HistoryDepth of
// them (older ones are gone). A watch is buffered per watcher
// (WithWatchBuffer, default 256): a slow watcher never blocks the Handle
// or other watchers; if it falls further behind it loses its oldest
// undelivered versions and is told so (Update.Skipped). A stored version
// of another type than the Handle's, or one that cannot be decoded, is
// logged and skipped; the previous value stays. A deleted config (a
// delete or purge marker written by other tools) keeps its last value.
// If the cluster's latest version is lower than the Handle's (the cluster
// was rebuilt), the cluster wins and the Handle goes back to it.
//
// # Names
//
// Names are checked strictly (CheckName): 1 to MaxNameLen bytes of
// letters, digits and "-/_=.", so nothing a caller sends reaches a subject
// raw. There are no built-in per-environment or per-zone overrides: model
// them as names ("pricing", "pricing.eu-west", "staging/pricing") and let
// each process choose the name it reads.
//
// Store and Handle are safe for concurrent use.
package config
