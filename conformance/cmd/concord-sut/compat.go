package main

import (
	"encoding/binary"
	"fmt"
	"io"

	"google.golang.org/protobuf/proto"
)

// maxCompatMessage bounds the ServerCompatRequest read from the runner; the
// real one is a few kilobytes (two certificates and a key).
const maxCompatMessage = 1 << 20

// readDelimited reads one message framed as the runner frames it: a 4-byte
// big-endian length, then that many bytes of binary protobuf.
func readDelimited(r io.Reader, msg proto.Message) error {
	var prefix [4]byte
	if _, err := io.ReadFull(r, prefix[:]); err != nil {
		return err
	}
	n := binary.BigEndian.Uint32(prefix[:])
	if n > maxCompatMessage {
		return fmt.Errorf("message of %d bytes is over the %d-byte limit", n, maxCompatMessage)
	}
	data := make([]byte, n)
	if _, err := io.ReadFull(r, data); err != nil {
		return err
	}
	return proto.Unmarshal(data, msg)
}

// writeDelimited writes msg framed as readDelimited reads it.
func writeDelimited(w io.Writer, msg proto.Message) error {
	data, err := proto.Marshal(msg)
	if err != nil {
		return err
	}
	framed := binary.BigEndian.AppendUint32(make([]byte, 0, 4+len(data)), uint32(len(data)))
	_, err = w.Write(append(framed, data...))
	return err
}
