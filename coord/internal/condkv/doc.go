// Package condkv is Concord's one way to read and write the keys of a
// JetStream key-value bucket conditionally: locks, the registry and
// cluster-scoped rate limits are built on it.
//
// It talks to the bucket's stream directly rather than through the KV API,
// because the KV API hides what conditional writes need:
//
//   - Last reads a key's last message from the stream leader, markers
//     included. kv.Get hides delete, purge and expiry (MaxAge) markers, so a
//     writer that expects "no message" after a key expired conflicts with
//     the marker forever; Last returns the marker's sequence.
//   - Put is one conditional publish (expected last sequence per subject)
//     with an optional per-message TTL; kv.Update drops a key's TTL and
//     kv.Create costs three round trips when a marker exists.
//   - Purge replaces a key with a short-lived purge marker, conditionally,
//     so freed keys do not accumulate.
//   - Watch wakes a caller on new messages of one key. Watches can miss
//     quickly replaced messages and resume late after a node dies: callers
//     re-check with Last and on a timer, never trust a watch alone.
//   - LastAll (the last message of every matching key) and Range (a
//     bounded window of the stream's messages on matching keys) read many
//     keys in one batched direct get: one request, no consumer, so that a
//     status read costs a fixed number of requests and creates nothing.
//
// Every key is checked by CheckKey: 1 to MaxKeyLen bytes of letters,
// digits and "-/_=.", with no empty token. Callers map anything a peer
// sends into such a key first (escaping or hashing); a key that breaks
// the rule never reaches a subject.
package condkv
