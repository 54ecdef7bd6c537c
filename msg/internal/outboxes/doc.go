// Package outboxes keeps, per coord.Node, the outboxes whose relays run
// in this process on that node, so that a status read on the node can
// report their depth. Package msg registers each Relay while it runs;
// package msgstatus reads them.
package outboxes
