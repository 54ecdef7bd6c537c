package rpc_test

import (
	"strings"
	"testing"
	"time"

	greeterv1 "github.com/concordrpc/concord/examples/greeter/gen/greeter/v1"
	"github.com/concordrpc/concord/examples/greeter/gen/greeter/v1/greeterv1concord"
	"github.com/concordrpc/concord/rpc"
)

func TestDNSResolver(t *testing.T) {
	ts := startServer(t, quietServer(), &testGreeter{})
	port := ts.url[strings.LastIndex(ts.url, ":")+1:]
	r := rpc.NewDNSResolver(map[string]string{"greeter": "localhost:" + port}, 50*time.Millisecond)
	defer r.Close()
	insts, err := r.Resolve(t.Context(), "greeter")
	if err != nil {
		t.Fatal(err)
	}
	var v4 bool
	for _, in := range insts {
		v4 = v4 || in.BaseURL == "http://127.0.0.1:"+port
	}
	if !v4 {
		t.Fatalf("localhost resolved to %v, want 127.0.0.1 among them", insts)
	}
	conn := rpc.NewResolvingConn(r)
	defer conn.Close()
	for i := 0; i < 5; i++ { // an unreachable ::1 is ejected after one failure, and Greet retries
		if _, err := greeterv1concord.NewGreeterServiceClient(conn).Greet(t.Context(), &greeterv1.GreetRequest{Name: "dns"}); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := r.Resolve(t.Context(), "unknown"); err == nil {
		t.Fatal("unknown service resolved")
	}
	// A malformed target fails without a lookup (tests send no DNS queries
	// beyond localhost, which /etc/hosts answers).
	bad := rpc.NewDNSResolver(map[string]string{"x": "no-port"}, 0)
	defer bad.Close()
	if _, err := bad.Resolve(t.Context(), "x"); err == nil || !strings.Contains(err.Error(), "no-port") {
		t.Fatalf("malformed target: %v", err)
	}
}
