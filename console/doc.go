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
// # Dead letters
//
// Where the listener serves dead-letter routes (an App's DeadLettersPath;
// WithDeadLettersPath, "" for none as on `concord node -http`), the page
// lists the dead letters while the status counts some, with Replay and
// Discard for each and for all. Those routes need the App's admin
// credential: the operator pastes a token into a password field, and the
// page keeps it in the tab's sessionStorage (or only in memory), sends it
// only as "Authorization: Bearer" to those routes, and forgets it on a
// 401, which it reports. Without a token the page shows the count and
// asks for one. Without the routes it names the `concord dead-letters`
// command instead.
//
// # Safety
//
// Apart from the dead-letter routes above, the page sends no request but
// the status read, and it has no form that submits anywhere. The script
// writes every string from the status and the dead letters with
// textContent, never as markup. Keep the listener on loopback (the App's
// default).
package console
