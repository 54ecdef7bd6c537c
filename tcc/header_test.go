package tcc

import (
	"errors"
	"strings"
	"testing"

	"connectrpc.com/connect/v2"
)

func header(kv ...string) *connect.Header {
	h := &connect.Header{}
	for i := 0; i+1 < len(kv); i += 2 {
		h.Add(kv[i], kv[i+1])
	}
	return h
}

func TestParseHeaders(t *testing.T) {
	t.Parallel()
	long := strings.Repeat("a", MaxIDLen)
	for _, tc := range []struct {
		name string
		h    *connect.Header
		want BranchKey
		err  string // substring of the error; "" for success
	}{
		{"ok", header(TxHeader, "tx-1", BranchHeader, "svc.Account:debit_1"), key("tx-1", "svc.Account:debit_1"), ""},
		{"max length", header(TxHeader, long, BranchHeader, long), key(long, long), ""},
		{"lower-case names", header("concord-tcc-tx", "a", "concord-tcc-branch", "b"), key("a", "b"), ""},
		{"nil", nil, BranchKey{}, TxHeader + " is missing"},
		{"no tx", header(BranchHeader, "b"), BranchKey{}, TxHeader + " is missing"},
		{"no branch", header(TxHeader, "a"), BranchKey{}, BranchHeader + " is missing"},
		{"repeated", header(TxHeader, "a", TxHeader, "a", BranchHeader, "b"), BranchKey{}, "repeated"},
		{"empty", header(TxHeader, "", BranchHeader, "b"), BranchKey{}, "empty"},
		{"too long", header(TxHeader, long+"a", BranchHeader, "b"), BranchKey{}, "more than 128"},
		{"slash", header(TxHeader, "a/b", BranchHeader, "b"), BranchKey{}, "0x2f at offset 1"},
		{"space", header(TxHeader, "a", BranchHeader, "b c"), BranchKey{}, "0x20"},
		{"nul", header(TxHeader, "a\x00", BranchHeader, "b"), BranchKey{}, "0x00"},
		{"utf-8", header(TxHeader, "é", BranchHeader, "b"), BranchKey{}, "0xc3"},
		{"comma", header(TxHeader, "a,b", BranchHeader, "b"), BranchKey{}, "0x2c"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got, err := ParseHeaders(tc.h)
			if tc.err == "" {
				if err != nil || got != tc.want {
					t.Fatalf("ParseHeaders = (%v, %v), want %v", got, err, tc.want)
				}
				return
			}
			if err == nil || !errors.Is(err, ErrBadHeader) || !strings.Contains(err.Error(), tc.err) {
				t.Fatalf("ParseHeaders error %v, want ErrBadHeader containing %q", err, tc.err)
			}
		})
	}
}

func TestSetHeaders(t *testing.T) {
	t.Parallel()
	h := header(TxHeader, "old")
	if err := SetHeaders(h, key("tx", "br")); err != nil {
		t.Fatal(err)
	}
	if got, err := ParseHeaders(h); err != nil || got != key("tx", "br") {
		t.Fatalf("round trip = (%v, %v)", got, err)
	}
	h = &connect.Header{}
	if err := SetHeaders(h, key("t x", "br")); !errors.Is(err, ErrBadHeader) || h.Len() != 0 {
		t.Fatalf("SetHeaders of a bad key = %v, header %d entries", err, h.Len())
	}
}

func TestHashIsBoundedAndDistinct(t *testing.T) {
	t.Parallel()
	a := key(strings.Repeat("x", MaxIDLen), strings.Repeat("y", MaxIDLen)).hash()
	b := key("x", "yy").hash()
	c := key("xy", "y").hash()
	if len(a) != 32 || len(b) != 32 || b == c {
		t.Fatalf("hashes %q %q %q", a, b, c)
	}
}

func FuzzParseHeaders(f *testing.F) {
	f.Add("tx-1", "b1", "")
	f.Add("a/b", "", "x")
	f.Add(strings.Repeat("a", 200), "b\x00", "c")
	f.Fuzz(func(t *testing.T, tx, br, extra string) {
		h := header(TxHeader, tx, BranchHeader, br)
		if extra != "" {
			h.Add(BranchHeader, extra)
		}
		k, err := ParseHeaders(h)
		if err != nil {
			if !errors.Is(err, ErrBadHeader) || len(err.Error()) > 200 {
				t.Fatalf("error %q", err)
			}
			return
		}
		if extra != "" || k.TxID != tx || k.BranchID != br || k.Validate() != nil {
			t.Fatalf("accepted %q %q %q as %v", tx, br, extra, k)
		}
		for _, s := range []string{tx, br} {
			if s == "" || len(s) > MaxIDLen || strings.ContainsAny(s, "/ \x00,%") {
				t.Fatalf("accepted bad ID %q", s)
			}
		}
		if len(k.hash()) != 32 {
			t.Fatal("hash not bounded")
		}
	})
}
