package localstore

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"testing"
)

const crashDirEnv = "LOCALSTORE_TEST_CRASH_DIR"

// TestCrashKeepsAcknowledgedWrites kills a process (SIGKILL) while it
// commits transactions of two keys each, then reopens its store: every
// transaction whose Update returned is there, and no transaction is there
// in part. A process crash is what this can simulate; power loss is not.
func TestCrashKeepsAcknowledgedWrites(t *testing.T) {
	if dir := os.Getenv(crashDirEnv); dir != "" {
		crashChild(dir)
		return
	}
	t.Parallel()
	dir := t.TempDir()
	cmd := exec.Command(os.Args[0], "-test.run=^TestCrashKeepsAcknowledgedWrites$", "-test.count=1")
	cmd.Env = append(os.Environ(), crashDirEnv+"="+dir)
	cmd.Stderr = os.Stderr
	out, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	acked := -1
	lines := bufio.NewScanner(out)
	for acked < 300 && lines.Scan() {
		if n, ok := strings.CutPrefix(lines.Text(), "acked "); ok {
			if acked, err = strconv.Atoi(n); err != nil {
				t.Fatal(err)
			}
		}
	}
	if err := cmd.Process.Kill(); err != nil {
		t.Fatal(err)
	}
	_ = cmd.Wait()
	if acked < 300 {
		t.Fatalf("child stopped after acknowledging %d transactions", acked)
	}

	s, err := Open(dir)
	if err != nil {
		t.Fatalf("Open after crash: %v", err)
	}
	defer s.Close()
	found := map[int]int{} // transaction -> keys found
	err = s.Scan([]byte("tx/"), func(k, v []byte) error {
		var i int
		var part string
		if _, err := fmt.Sscanf(string(k), "tx/%06d/%s", &i, &part); err != nil {
			return err
		}
		if !bytes.Equal(v, crashValue(i, part)) {
			return fmt.Errorf("%s has a wrong value of %d bytes", k, len(v))
		}
		found[i]++
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	for i := 0; i <= acked; i++ {
		if found[i] != 2 {
			t.Errorf("acknowledged transaction %d: %d of 2 keys after the crash", i, found[i])
		}
	}
	for i, n := range found {
		if n != 2 {
			t.Errorf("transaction %d applied in part: %d of 2 keys", i, n)
		}
	}
	t.Logf("killed after %d acknowledged transactions; %d survived", acked+1, len(found))
	if err := s.Set([]byte("after"), []byte("crash")); err != nil {
		t.Fatalf("write after recovery: %v", err)
	}
}

// crashValue is the value of one key; every tenth transaction's second key
// is large enough for the value log.
func crashValue(i int, part string) []byte {
	if part == "b" && i%10 == 0 {
		return bytes.Repeat([]byte{byte(i)}, 2*valueThreshold)
	}
	return []byte(fmt.Sprintf("%s-%d", part, i))
}

// crashChild commits transactions until it is killed, printing each one
// after Update returned.
func crashChild(dir string) {
	s, err := Open(dir)
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(2)
	}
	for i := 0; ; i++ {
		err := s.Update(func(tx *Tx) error {
			for _, part := range []string{"a", "b"} {
				if err := tx.Set([]byte(fmt.Sprintf("tx/%06d/%s", i, part)), crashValue(i, part)); err != nil {
					return err
				}
			}
			return nil
		})
		if err != nil && !errors.Is(err, ErrClosed) {
			fmt.Fprintln(os.Stderr, err)
			os.Exit(2)
		}
		fmt.Printf("acked %d\n", i)
	}
}
