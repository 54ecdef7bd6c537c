package concordv1

import (
	"bytes"
	_ "embed" // embeds options.proto
)

// OptionsProtoPath is the import path of Concord's options file, as written
// in an import statement: import "concord/v1/options.proto";
const OptionsProtoPath = "concord/v1/options.proto"

//go:embed options.proto
var optionsProto []byte

// OptionsProtoSource returns the source of options.proto, for tools that
// write it into an include directory (see `concord proto-deps`).
func OptionsProtoSource() []byte { return bytes.Clone(optionsProto) }
