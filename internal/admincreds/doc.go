// Package admincreds reads, writes and checks the named bearer tokens that
// guard an App's admin writes (dynamic configuration), shared by the App
// and the concord CLI.
//
// A credentials file holds one credential per line, a name and a token
// separated by spaces:
//
//	# who   token
//	admin   5c0b…(64 hex digits)
//	ci-bot  0e9d…
//
// Blank lines and lines starting with # are ignored. Names are 1–64 bytes
// of [A-Za-z0-9._@-]; tokens are 32–256 printable bytes without spaces.
// The App accepts any credential in its file and records the name with
// each write; the CLI sends one credential's token.
package admincreds
