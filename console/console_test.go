package console_test

import (
	"io"
	"net/http"
	"net/http/httptest"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/concordrpc/concord/console"
)

// TestHandler: the page and each asset are served with their type and
// the strict headers; other paths and methods are refused; the bare path
// redirects.
func TestHandler(t *testing.T) {
	h := console.Handler(console.WithStatusPath("/x/status"), console.WithRefresh(5*time.Second))
	for _, tc := range []struct {
		method, path string
		code         int
		ctype        string
		location     string
	}{
		{"GET", "/console/", 200, "text/html; charset=utf-8", ""},
		{"HEAD", "/console/", 200, "text/html; charset=utf-8", ""},
		{"GET", "/console/console.js", 200, "text/javascript; charset=utf-8", ""},
		{"GET", "/console/console.css", 200, "text/css; charset=utf-8", ""},
		{"GET", "/console/favicon.svg", 200, "image/svg+xml", ""},
		{"GET", "/console", 301, "", "/console/"},
		{"GET", "/console/index.html", 404, "", ""},
		{"GET", "/console/assets/console.js", 404, "", ""},
		{"POST", "/console/", 405, "", ""},
	} {
		t.Run(tc.method+" "+tc.path, func(t *testing.T) {
			rec := httptest.NewRecorder()
			h.ServeHTTP(rec, httptest.NewRequest(tc.method, tc.path, nil))
			res := rec.Result()
			if res.StatusCode != tc.code {
				t.Fatalf("status %d, want %d", res.StatusCode, tc.code)
			}
			if tc.ctype != "" && res.Header.Get("Content-Type") != tc.ctype {
				t.Errorf("Content-Type %q, want %q", res.Header.Get("Content-Type"), tc.ctype)
			}
			if got := res.Header.Get("Location"); got != tc.location {
				t.Errorf("Location %q, want %q", got, tc.location)
			}
			csp := res.Header.Get("Content-Security-Policy")
			for _, want := range []string{"default-src 'self'", "script-src 'self'", "frame-ancestors 'none'"} {
				if !strings.Contains(csp, want) {
					t.Errorf("Content-Security-Policy %q lacks %q", csp, want)
				}
			}
			if strings.Contains(csp, "unsafe") {
				t.Errorf("Content-Security-Policy %q allows something unsafe", csp)
			}
			if got := res.Header.Get("X-Content-Type-Options"); got != "nosniff" {
				t.Errorf("X-Content-Type-Options %q", got)
			}
			if b, _ := io.ReadAll(res.Body); tc.method == "HEAD" && len(b) != 0 {
				t.Errorf("HEAD answered a body of %d bytes", len(b))
			}
		})
	}
}

// TestPage: the page carries the configured status path and interval,
// and nothing the policy would block or that could run markup from data:
// no inline script or style, no event handler attribute, no other origin;
// the script never assigns markup.
func TestPage(t *testing.T) {
	h := console.Handler(console.WithStatusPath("/x/status"), console.WithRefresh(5*time.Second))
	get := func(path string) string {
		rec := httptest.NewRecorder()
		h.ServeHTTP(rec, httptest.NewRequest("GET", path, nil))
		return rec.Body.String()
	}
	page := get("/console/")
	for _, want := range []string{`data-status="/x/status"`, `data-refresh-ms="5000"`, `<script src="console.js" defer></script>`} {
		if !strings.Contains(page, want) {
			t.Errorf("page lacks %s", want)
		}
	}
	if n := strings.Count(page, "<script"); n != 1 {
		t.Errorf("page has %d script elements, want only console.js", n)
	}
	for _, re := range []string{`<style`, `\sstyle=`, `\son[a-z]+=`, `(?i)(src|href)="(https?:)?//`, `@import`} {
		if regexp.MustCompile(re).MatchString(page) {
			t.Errorf("page matches %s", re)
		}
	}
	js := get("/console/console.js")
	for _, bad := range []string{"innerHTML", "outerHTML", "insertAdjacentHTML", "document.write", "eval(", "new Function"} {
		if strings.Contains(js, bad) {
			t.Errorf("console.js uses %s", bad)
		}
	}
	css := get("/console/console.css")
	if regexp.MustCompile(`url\(|@import|@font-face`).MatchString(css) {
		t.Error("console.css loads something")
	}

	// The default status path, and options that are refused.
	page = func() string {
		rec := httptest.NewRecorder()
		console.Handler(console.WithStatusPath("//elsewhere/status"), console.WithRefresh(0)).ServeHTTP(rec, httptest.NewRequest("GET", "/console/", nil))
		return rec.Body.String()
	}()
	for _, want := range []string{`data-status="/concord/status"`, `data-refresh-ms="500"`, `data-dead-letters="/concord/dead-letters"`} {
		if !strings.Contains(page, want) {
			t.Errorf("page with refused options lacks %s", want)
		}
	}

	// The dead-letter routes: another path, none, or a refused one.
	for _, tc := range []struct{ path, want string }{
		{"/x/dead-letters", `data-dead-letters="/x/dead-letters"`},
		{"", `data-dead-letters=""`},
		{"//elsewhere/dead-letters", `data-dead-letters="/concord/dead-letters"`},
	} {
		rec := httptest.NewRecorder()
		console.Handler(console.WithDeadLettersPath(tc.path)).ServeHTTP(rec, httptest.NewRequest("GET", "/console/", nil))
		if !strings.Contains(rec.Body.String(), tc.want) {
			t.Errorf("WithDeadLettersPath(%q): page lacks %s", tc.path, tc.want)
		}
	}
	// The token goes only into a header, never into a URL or localStorage.
	if strings.Contains(js, "localStorage") || !strings.Contains(js, `Authorization: "Bearer " + sent`) {
		t.Error("console.js keeps the admin token elsewhere than sessionStorage and the Authorization header")
	}
}

// TestMuxRedirect: mounted with the pattern the package doc names, the
// bare path redirects to the page.
func TestMuxRedirect(t *testing.T) {
	mux := http.NewServeMux()
	mux.Handle("GET "+console.Path, console.Handler())
	rec := httptest.NewRecorder()
	mux.ServeHTTP(rec, httptest.NewRequest("GET", "/console", nil))
	if rec.Code/100 != 3 || rec.Header().Get("Location") != "/console/" {
		t.Fatalf("GET /console: %d Location %q, want a redirect to /console/", rec.Code, rec.Header().Get("Location"))
	}
}
