package localstore

import (
	"testing"

	"go.uber.org/goleak"
)

func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m)
}

// withValueLogFileSize sets the value log file size, so that tests can
// fill several files quickly.
func withValueLogFileSize(n int64) Option {
	return optionFunc(func(c *config) { c.vlogSize = n })
}
