// Package layout names what package msg keeps on JetStream, so that msg
// and its status reader (msgstatus) agree on it without msgstatus
// importing msg's stores.
package layout
