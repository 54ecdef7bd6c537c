// Package console is Concord's web console: one page, built into the
// binary, that shows what a coordination status read reports (the
// JSON of registry.StatusHandler) in tables an operator can scan: the node
// and its mode, the meta leader, peers with their state and the reason,
// buckets and streams, services and their instances, locks and elections
// with their fencing tokens and time left, rate limits and their
// saturation, circuit breakers per instance, TCC transactions in flight,
// stuck and recently finished, message consumers, dead letters and
// outboxes.
//
// # Serving
//
// Handler serves the page and its stylesheet and script at Path on the
// listener that serves the status JSON (an App's admin listener, or
// `concord node -http`); the page polls the status route on the same
// origin. Everything is embedded with go:embed: no build step, no content
// from another origin. The answers carry a strict Content-Security-Policy
// (default-src 'self', no inline script or style, frame-ancestors 'none')
// and X-Content-Type-Options: nosniff.
//
// # Refreshing and failures
//
// The page reads the status every two seconds by default (WithRefresh).
// When a read fails, or the route answers 503 with {"error": ...} because
// coordination is down, the page shows the reason in a banner, keeps the
// last good data greyed out with its age, and backs off exponentially up
// to 30 seconds until a read succeeds again. Parts of the status that a
// node does not report (an older node, or one without the feature) are
// shown as "not reported"; parts that did not answer in time show the
// reason the status gives.
//
// # Safety
//
// The console only reads: it has no form and sends no request but the
// status read. Dead letters are counted and the page names the `concord
// dead-letters` command that replays them, since no HTTP route replays
// them. The script writes every string from the status with textContent,
// never as markup. Keep the listener on loopback (the App's default).
package console
