package console

import (
	"bytes"
	"embed"
	"fmt"
	"html/template"
	"net/http"
	"strconv"
	"strings"
	"time"
)

// Path is where Handler serves the page; its stylesheet and script are
// beside it. A request for Path without its trailing slash is redirected
// to Path.
const Path = "/console/"

// DefaultStatusPath is the status route the page polls unless
// WithStatusPath says otherwise: an App's StatusPath and the path
// `concord node -http` serves.
const DefaultStatusPath = "/concord/status"

// DefaultDeadLettersPath is the route of dead letters the page lists,
// replays and discards with an admin token unless WithDeadLettersPath
// says otherwise: an App's DeadLettersPath.
const DefaultDeadLettersPath = "/concord/dead-letters"

// DefaultRefresh is how often the page reads the status unless
// WithRefresh says otherwise.
const DefaultRefresh = 2 * time.Second

// securityPolicy allows only the console's own page, stylesheet, script
// and status reads, from the origin that served them, and no framing.
const securityPolicy = "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self'; " +
	"connect-src 'self'; object-src 'none'; base-uri 'none'; form-action 'none'; frame-ancestors 'none'"

//go:embed assets
var assets embed.FS

// Option configures Handler.
type Option interface{ apply(*config) }

type optionFunc func(*config)

func (f optionFunc) apply(c *config) { f(c) }

type config struct {
	statusPath      string
	deadLettersPath string
	refresh         time.Duration
}

// WithStatusPath sets the path, on the origin that serves the page, of the
// status route the page polls. It must start with "/"; another value is
// ignored. Default: DefaultStatusPath.
func WithStatusPath(path string) Option {
	return optionFunc(func(c *config) {
		if strings.HasPrefix(path, "/") && !strings.HasPrefix(path, "//") {
			c.statusPath = path
		}
	})
}

// WithDeadLettersPath sets the path, on the origin that serves the page,
// of the dead-letter routes (an App's DeadLettersPath: a list with GET,
// replay and discard with POST to {seq}/replay and {seq}/discard), or ""
// for a listener that has none (`concord node -http`): the page then only
// counts dead letters and names the CLI. A path must start with "/";
// another value is ignored. Default: DefaultDeadLettersPath.
func WithDeadLettersPath(path string) Option {
	return optionFunc(func(c *config) {
		if path == "" || strings.HasPrefix(path, "/") && !strings.HasPrefix(path, "//") {
			c.deadLettersPath = path
		}
	})
}

// WithRefresh sets how often the page reads the status while reads
// succeed, at least 500 milliseconds. Default: DefaultRefresh.
func WithRefresh(d time.Duration) Option {
	return optionFunc(func(c *config) { c.refresh = max(d, 500*time.Millisecond) })
}

// asset is one embedded file as served.
type asset struct {
	body        []byte
	contentType string
}

// Handler returns the console: the page at Path and its assets beside it,
// for GET and HEAD. Mount it at Path on the listener that serves the
// status route (with http.ServeMux, the pattern "GET /console/", which
// also redirects "/console"). It answers 404 for any other path and 405
// for other methods. It is safe for concurrent use.
func Handler(opts ...Option) http.Handler {
	cfg := config{statusPath: DefaultStatusPath, deadLettersPath: DefaultDeadLettersPath, refresh: DefaultRefresh}
	for _, o := range opts {
		o.apply(&cfg)
	}
	files, err := load(cfg)
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		h := w.Header()
		h.Set("Content-Security-Policy", securityPolicy)
		h.Set("X-Content-Type-Options", "nosniff")
		h.Set("X-Frame-Options", "DENY")
		h.Set("Referrer-Policy", "no-referrer")
		h.Set("Cache-Control", "no-cache")
		if r.Method != http.MethodGet && r.Method != http.MethodHead {
			h.Set("Allow", "GET, HEAD")
			http.Error(w, "method not allowed", http.StatusMethodNotAllowed)
			return
		}
		if err != nil {
			http.Error(w, err.Error(), http.StatusInternalServerError)
			return
		}
		if r.URL.Path == strings.TrimSuffix(Path, "/") {
			http.Redirect(w, r, Path, http.StatusMovedPermanently)
			return
		}
		a, ok := files[r.URL.Path]
		if !ok {
			http.NotFound(w, r)
			return
		}
		h.Set("Content-Type", a.contentType)
		h.Set("Content-Length", strconv.Itoa(len(a.body)))
		if r.Method == http.MethodHead {
			return
		}
		_, _ = w.Write(a.body)
	})
}

// load reads the embedded assets and renders the page for cfg. An error
// means a broken build (an asset missing from the embedded files), which
// the package's tests catch.
func load(cfg config) (map[string]asset, error) {
	files := map[string]asset{}
	for name, typ := range map[string]string{
		"console.css": "text/css; charset=utf-8",
		"console.js":  "text/javascript; charset=utf-8",
		"favicon.svg": "image/svg+xml",
	} {
		b, err := assets.ReadFile("assets/" + name)
		if err != nil {
			return nil, fmt.Errorf("console: embedded asset: %w", err)
		}
		files[Path+name] = asset{b, typ}
	}
	page, err := template.ParseFS(assets, "assets/index.html")
	if err != nil {
		return nil, fmt.Errorf("console: embedded page: %w", err)
	}
	var buf bytes.Buffer
	if err := page.Execute(&buf, map[string]string{
		"StatusPath":      cfg.statusPath,
		"DeadLettersPath": cfg.deadLettersPath,
		"RefreshMs":       strconv.FormatInt(cfg.refresh.Milliseconds(), 10),
	}); err != nil {
		return nil, fmt.Errorf("console: embedded page: %w", err)
	}
	files[Path] = asset{buf.Bytes(), "text/html; charset=utf-8"}
	return files, nil
}
