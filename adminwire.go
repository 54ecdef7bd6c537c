package concord

import (
	"encoding/json"
	"net/http"
	"time"
)

// The JSON answers of an App's admin routes (ConfigPath, LocksPath; the
// DeadLettersPath routes have DeadLetterList and DeadLetterResult), which
// `concord config` and `concord lock` decode.

// ConfigEntry is one version of a config, as the ConfigPath get and
// history routes serve it.
type ConfigEntry struct {
	// Name is the config's name.
	Name string `json:"name"`
	// Version is the version's number, from 1.
	Version uint64 `json:"version"`
	// Type is the full name of the value's protobuf message type.
	Type string `json:"type"`
	// Writer is who wrote the version, as the writer said (through these
	// routes: the admin credential's name).
	Writer string `json:"writer"`
	// Time is when the version was written, by the writer's clock (UTC).
	Time time.Time `json:"time"`
	// Value is the version's value in protojson.
	Value json.RawMessage `json:"value"`
}

// ConfigWrite is the answer of a ConfigPath write or rollback.
type ConfigWrite struct {
	// Name is the config's name.
	Name string `json:"name"`
	// Version is the version written.
	Version uint64 `json:"version"`
	// Replaced is the version it replaced, 0 if none.
	Replaced uint64 `json:"replaced"`
	// Restored is, for a rollback, the version whose value was written
	// again.
	Restored uint64 `json:"restored,omitempty"`
}

// LockHold is the answer of the LocksPath hold route.
type LockHold struct {
	// Name is the lock's name.
	Name string `json:"name"`
	// Token is the grant's fencing token.
	Token uint64 `json:"token"`
	// Holder is the holder value the App wrote: "operator", the admin
	// credential's name, "via" and the App's host and process ID.
	Holder string `json:"holder"`
	// HeldForMillis is how long the App keeps holding it, in ms.
	HeldForMillis int64 `json:"held_for_ms"`
}

// AdminError is the answer of an admin route that failed, with a status
// code other than 200.
type AdminError struct {
	// Error says what failed.
	Error string `json:"error"`
	// Violations are, for a config value refused with 400, its type's
	// validation rules that it breaks: "field: message".
	Violations []string `json:"violations,omitempty"`
	// Current is, for a config write refused with 409, the current
	// version, if it could be read.
	Current uint64 `json:"current,omitempty"`
}

// writeAdminJSON answers an admin route with code and v in JSON.
func writeAdminJSON(w http.ResponseWriter, code int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(code)
	_ = json.NewEncoder(w).Encode(v)
}
