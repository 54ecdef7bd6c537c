package console_test

import (
	"fmt"
	"net/http"
	"net/http/httptest"

	"github.com/concordrpc/concord/console"
)

// The console is mounted beside the status route it reads, on a listener
// that stays on loopback.
func ExampleHandler() {
	mux := http.NewServeMux()
	mux.Handle("GET "+console.Path, console.Handler())
	// mux.Handle("GET /concord/status", registry.StatusHandler(node, resolver))

	srv := httptest.NewServer(mux)
	defer srv.Close()
	res, err := http.Get(srv.URL + "/console")
	if err != nil {
		fmt.Println(err)
		return
	}
	res.Body.Close()
	fmt.Println(res.Request.URL.Path, res.StatusCode, res.Header.Get("Content-Type"))
	fmt.Println(res.Header.Get("X-Content-Type-Options"))
	// Output:
	// /console/ 200 text/html; charset=utf-8
	// nosniff
}
