package pgtest_test

import (
	"context"
	"net"
	"os"
	"os/exec"
	"strings"
	"testing"

	"go.uber.org/goleak"

	"github.com/concordrpc/concord/internal/pgtest"
)

func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m)
}

// The child process of TestUnavailable: it asks for a database and does
// nothing else.
const childEnv = "CONCORD_PGTEST_CHILD"

func TestChild(t *testing.T) {
	if os.Getenv(childEnv) == "" {
		t.Skip("run by TestUnavailable only")
	}
	pgtest.DB(t)
	t.Log("CHILD GOT A DATABASE")
}

// TestUnavailable checks, in a child test process, that a missing variable
// skips and an unreachable server fails.
func TestUnavailable(t *testing.T) {
	t.Parallel()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	closed := ln.Addr().String() // nothing listens there once closed
	ln.Close()
	for _, tc := range []struct {
		name, dsn string
		fails     bool
		want      []string
	}{
		{"unset", "", false, []string{"--- SKIP: TestChild", "set " + pgtest.EnvVar + " to a PostgreSQL DSN; .ci/run starts one"}},
		{"unreachable", "postgres://u:secret-pw@" + closed + "/db?sslmode=disable", true, []string{"--- FAIL: TestChild", "cannot reach the PostgreSQL server named by " + pgtest.EnvVar}},
		{"invalid", "postgres://u:secret-pw@127.0.0.1:notaport/db", true, []string{"--- FAIL: TestChild"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			cmd := exec.CommandContext(t.Context(), os.Args[0], "-test.run=^TestChild$", "-test.v", "-test.count=1")
			cmd.Env = append(os.Environ(), childEnv+"=1", pgtest.EnvVar+"="+tc.dsn)
			out, err := cmd.CombinedOutput()
			if (err != nil) != tc.fails {
				t.Errorf("child exit error %v, want failure %v", err, tc.fails)
			}
			for _, want := range tc.want {
				if !strings.Contains(string(out), want) {
					t.Errorf("child output does not contain %q:\n%s", want, out)
				}
			}
			if strings.Contains(string(out), "secret-pw") {
				t.Errorf("child output shows the password:\n%s", out)
			}
			if strings.Contains(string(out), "CHILD GOT A DATABASE") {
				t.Errorf("child got a database:\n%s", out)
			}
		})
	}
}

// TestIsolation checks that tests get separate schemas, that two handles
// on one schema share it (another process), and that the schema is
// dropped at the end of the test.
func TestIsolation(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	var name string
	t.Run("use", func(t *testing.T) {
		a, b := pgtest.NewSchema(t), pgtest.NewSchema(t)
		if a.Name == b.Name {
			t.Fatalf("two schemas named %s", a.Name)
		}
		name = a.Name
		a1, a2, b1 := a.Open(t), a.Open(t), b.Open(t)
		for _, db := range []struct {
			name string
			exec func(string, ...any) error
		}{
			{"a1", func(q string, args ...any) error { _, err := a1.ExecContext(ctx, q, args...); return err }},
			{"b1", func(q string, args ...any) error { _, err := b1.ExecContext(ctx, q, args...); return err }},
		} {
			// The same unqualified name in both schemas.
			if err := db.exec("CREATE TABLE items (k TEXT PRIMARY KEY)"); err != nil {
				t.Fatalf("%s: %v", db.name, err)
			}
		}
		if _, err := a1.ExecContext(ctx, "INSERT INTO items (k) VALUES ($1), ($2)", "x", "y"); err != nil {
			t.Fatal(err)
		}
		for _, tc := range []struct {
			name string
			n    int
			q    func() (int, error)
		}{
			{"a2 sees a1's rows", 2, func() (n int, err error) {
				return n, a2.QueryRowContext(ctx, "SELECT count(*) FROM items").Scan(&n)
			}},
			{"b1 does not", 0, func() (n int, err error) {
				return n, b1.QueryRowContext(ctx, "SELECT count(*) FROM items").Scan(&n)
			}},
		} {
			if n, err := tc.q(); err != nil || n != tc.n {
				t.Errorf("%s: count (%d, %v), want %d", tc.name, n, err, tc.n)
			}
		}
		var path string
		if err := a2.QueryRowContext(ctx, "SELECT current_schema()").Scan(&path); err != nil || path != a.Name {
			t.Errorf("current_schema() = (%q, %v), want %q", path, err, a.Name)
		}
	})
	db := pgtest.DB(t)
	var n int
	if err := db.QueryRowContext(ctx, "SELECT count(*) FROM pg_namespace WHERE nspname = $1", name).Scan(&n); err != nil || n != 0 {
		t.Fatalf("schema %s after its test: count (%d, %v), want 0", name, n, err)
	}
}
