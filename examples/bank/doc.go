// Command bank is the TCC example: a checking service (Badger), a savings
// service (SQLite) and a transfer service that moves money between them
// with a two-branch TCC transaction, in one binary on an embedded node.
// Each committed transfer is announced by a TransferCompleted event from
// the checking service's outbox, and a statement service keeps each
// account's statement from those events. See the README's "TCC
// transactions: the bank example".
package main
