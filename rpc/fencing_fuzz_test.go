package rpc

import (
	"maps"
	"slices"
	"strconv"
	"strings"
	"testing"
)

// FuzzParseFencing feeds FencingHeader values a caller controls to the
// parser: it must never panic, and what it accepts must be bounded (at most
// 16 tokens, resources of 1 to 512 bytes, tokens above 0) and survive a
// round trip through the client's encoding.
func FuzzParseFencing(f *testing.F) {
	for _, seed := range []string{"orders/42=7", "a=1,b=2", "a%3Db=3", "%zz=1", "=5", "a=0", "a=1,a=2", "a=18446744073709551615", ", ,", strings.Repeat("r", 600) + "=1"} {
		f.Add(seed, "")
	}
	f.Add("a=1", "b=2")
	f.Fuzz(func(t *testing.T, v1, v2 string) {
		toks, err := parseFencing([]string{v1, v2})
		if err != nil {
			return
		}
		if len(toks) > maxFencingTokens {
			t.Fatalf("%d tokens accepted", len(toks))
		}
		var values []string
		for _, r := range slices.Sorted(maps.Keys(toks)) {
			if r == "" || len(r) > maxFencingResource || toks[r] == 0 {
				t.Fatalf("accepted resource %q (%d bytes) with token %d", r, len(r), toks[r])
			}
			values = append(values, escapeResource(r)+"="+strconv.FormatUint(toks[r], 10))
		}
		again, err := parseFencing(values)
		if err != nil || !maps.Equal(again, toks) {
			t.Fatalf("round trip of %v: %v, %v", toks, again, err)
		}
	})
}
