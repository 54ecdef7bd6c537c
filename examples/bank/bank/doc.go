// Package bank implements the bank example's services: two account
// services, checking (balances in the App's local Badger store) and
// savings (balances in a SQLite database), each a TCC participant, and a
// transfer service that moves money from one to the other with a
// two-branch TCC transaction coordinated by the App.
//
// An account has three balances: available (what can be spent), reserved
// (held by debits tried but not yet confirmed or cancelled) and incoming
// (credits tried but not yet confirmed or cancelled). A debit's Try moves
// the amount from available to reserved, its Confirm drops it, its Cancel
// gives it back; a credit's Try adds it to incoming, its Confirm moves it
// to available, its Cancel drops it. Once every transaction has ended,
// the sum of available and reserved over all accounts is what was
// deposited, and no balance is negative: the package tcc barrier runs
// each phase at most once per branch, and never a Confirm or Cancel
// without a successful Try.
//
// Every transfer has one checking branch. Its Confirm writes a
// TransferCompleted event (topic "bank.transfers", ordered by the from
// account) into a transactional outbox (package msg) in the same local
// transaction as the balance change, so a committed transfer is announced
// once and a cancelled one never. Events relays the outbox to JetStream
// and feeds the statement service, which records each event once, under
// the consumer name "statement", in its own keys of the App's local store,
// and serves each account's statement.
package bank
