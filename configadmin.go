package concord

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"path/filepath"
	"strconv"
	"time"

	"buf.build/go/protovalidate"
	"google.golang.org/protobuf/encoding/protojson"
	"google.golang.org/protobuf/reflect/protoreflect"
	"google.golang.org/protobuf/reflect/protoregistry"

	"github.com/concordrpc/concord/coord"
	"github.com/concordrpc/concord/coord/config"
	"github.com/concordrpc/concord/internal/admincreds"
)

// ConfigPath is the prefix under which an App's admin listener
// (WithAdminAddr) serves its dynamic configs, for `concord config`:
//
//	GET  /concord/config/{name}                          current version
//	GET  /concord/config/{name}/history[?limit=N]        kept versions, newest first
//	PUT  /concord/config/{name}?expect=V                 write a protojson body as the next version
//	POST /concord/config/{name}/rollback?version=N&expect=V
//
// Every route needs an admin credential (WithAdminCredentials) sent as
// "Authorization: Bearer <token>"; without a valid one the answer is 401.
// A name holding "/" is sent path-escaped ("staging%2Fpricing"). Writes
// are compare-and-set: expect is the version replaced, 0 to create; the
// credential's name is recorded as the writer. Values are protojson of the config's type: the type of the handle the
// App made with Config, else the type of its stored versions (it must be
// linked into the App's binary). Errors are
// JSON {"error": ...}: 400 for an invalid value (with "violations"), 409
// for a conflict (with "current"), 404 for an unknown config or version,
// 503 while coordination is unavailable.
const ConfigPath = "/concord/config/"

// AdminCredentialsFile is the file, in the App's data directory, of the
// admin credentials when WithAdminCredentials names none.
const AdminCredentialsFile = "admin.creds"

// defaultAdminName names the credential an App generates.
const defaultAdminName = "admin"

// maxConfigBody bounds a protojson body: JSON may be several times the
// binary encoding that config.MaxValueSize bounds.
const maxConfigBody = 4 * config.MaxValueSize

// mountConfigAdmin adds the ConfigPath routes to the admin mux, each
// behind the admin credentials. The default credentials file is created
// here if missing; a credentials file that cannot be read is logged, and
// every config route answers 503 until it can.
func (a *App) mountConfigAdmin(mux *http.ServeMux) {
	path := a.adminCredsPath()
	if a.cfg.adminCreds == "" {
		created, err := admincreds.Ensure(path, defaultAdminName)
		if created {
			a.cfg.logger.Info("concord: created admin credentials for concord config", slog.String("file", path), slog.String("name", defaultAdminName))
		}
		if err != nil {
			a.cfg.logger.Error("concord: admin credentials not created; config routes are unavailable", slog.String("file", path), slog.Any("error", err))
		}
	}
	if _, err := admincreds.Read(path); err != nil {
		a.cfg.logger.Error("concord: admin credentials unreadable; config routes answer 503 until they are", slog.String("file", path), slog.Any("error", err))
	}
	guard := adminGuard(path)
	mux.Handle("GET "+ConfigPath+"{name}", guard(a.serveConfigGet))
	mux.Handle("GET "+ConfigPath+"{name}/history", guard(a.serveConfigHistory))
	mux.Handle("PUT "+ConfigPath+"{name}", guard(a.serveConfigSet))
	mux.Handle("POST "+ConfigPath+"{name}/rollback", guard(a.serveConfigRollback))
}

// adminCredsPath is the admin credentials file: WithAdminCredentials's,
// else AdminCredentialsFile in the data directory.
func (a *App) adminCredsPath() string {
	if a.cfg.adminCreds != "" {
		return a.cfg.adminCreds
	}
	return filepath.Join(a.cfg.dataDir, AdminCredentialsFile)
}

// adminGuard wraps admin handlers so that they run only for a request
// with a valid admin credential (authorizeAdmin against the file at
// path), and get the credential's name.
func adminGuard(path string) func(h func(http.ResponseWriter, *http.Request, string)) http.HandlerFunc {
	return func(h func(http.ResponseWriter, *http.Request, string)) http.HandlerFunc {
		return func(w http.ResponseWriter, r *http.Request) {
			if name, ok := authorizeAdmin(w, r, path); ok {
				h(w, r, name)
			}
		}
	}
}

// authorizeAdmin checks r's bearer token against the credentials file at
// path, read now so that changes need no restart. It answers the request
// itself (401, or 503 for an unreadable file) when it returns false.
func authorizeAdmin(w http.ResponseWriter, r *http.Request, path string) (name string, ok bool) {
	cs, err := admincreds.Read(path)
	if err != nil {
		writeAdminJSON(w, http.StatusServiceUnavailable, &AdminError{Error: "admin credentials are unreadable on the server; see its log"})
		return "", false
	}
	if token, has := admincreds.BearerToken(r.Header.Get("Authorization")); has {
		if name, ok = admincreds.NewSet(cs).Check(token); ok {
			return name, true
		}
	}
	w.Header().Set("WWW-Authenticate", `Bearer realm="concord admin"`)
	writeAdminJSON(w, http.StatusUnauthorized, &AdminError{Error: "an admin credential is required: send Authorization: Bearer <token> with a token from the App's admin credentials file (" + AdminCredentialsFile + " in its data directory unless WithAdminCredentials names one)"})
	return "", false
}

// configStore returns a Store on the App's current node, waiting a
// bounded time for a node that is starting.
func (a *App) configStore(ctx context.Context) (*config.Store, error) {
	ctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	node, err := a.Node(ctx)
	if err != nil {
		if errors.Is(err, context.DeadlineExceeded) {
			err = fmt.Errorf("%w: %w", coord.ErrUnavailable, errStarting)
		}
		return nil, err
	}
	return config.NewStore(node, config.WithLogger(a.cfg.logger)), nil
}

// configType returns the message type of the config name: the type of
// the handle the App made for it, else the stored version's type as
// linked into the binary.
func (a *App) configType(e *config.Entry, name string) (protoreflect.MessageType, error) {
	if t, ok := a.configTypes.Load(name); ok {
		return t.(protoreflect.MessageType), nil
	}
	if e == nil {
		return nil, fmt.Errorf("%w: %s has no version and this App has no handle on it (concord.Config)", config.ErrNotFound, name)
	}
	t, err := protoregistry.GlobalTypes.FindMessageByName(e.Type)
	if err != nil {
		return nil, fmt.Errorf("%w: %s's type %s is not linked into this App", config.ErrNotFound, name, e.Type)
	}
	return t, nil
}

func (a *App) serveConfigGet(w http.ResponseWriter, r *http.Request, _ string) {
	name := r.PathValue("name")
	s, err := a.configStore(r.Context())
	if err != nil {
		writeConfigError(w, r, err, nil)
		return
	}
	e, err := s.Get(r.Context(), name)
	if err != nil {
		writeConfigError(w, r, err, nil)
		return
	}
	out, err := a.configEntry(e)
	if err != nil {
		writeConfigError(w, r, err, nil)
		return
	}
	writeAdminJSON(w, http.StatusOK, out)
}

func (a *App) serveConfigHistory(w http.ResponseWriter, r *http.Request, _ string) {
	name := r.PathValue("name")
	limit := 0
	if q := r.URL.Query().Get("limit"); q != "" {
		n, err := strconv.Atoi(q)
		if err != nil {
			writeConfigError(w, r, fmt.Errorf("%w: limit: %w", config.ErrInvalid, err), nil)
			return
		}
		limit = n
	}
	s, err := a.configStore(r.Context())
	if err != nil {
		writeConfigError(w, r, err, nil)
		return
	}
	es, err := s.History(r.Context(), name, limit)
	if err != nil {
		writeConfigError(w, r, err, nil)
		return
	}
	out := make([]*ConfigEntry, 0, len(es))
	for _, e := range es {
		ce, err := a.configEntry(e)
		if err != nil {
			writeConfigError(w, r, err, nil)
			return
		}
		out = append(out, ce)
	}
	writeAdminJSON(w, http.StatusOK, out)
}

func (a *App) serveConfigSet(w http.ResponseWriter, r *http.Request, writer string) {
	name := r.PathValue("name")
	expect, err := uintParam(r, "expect")
	if err != nil {
		writeConfigError(w, r, err, nil)
		return
	}
	body, err := io.ReadAll(http.MaxBytesReader(w, r.Body, maxConfigBody))
	if err != nil {
		writeConfigError(w, r, fmt.Errorf("%w: body: %w", config.ErrInvalid, err), nil)
		return
	}
	s, err := a.configStore(r.Context())
	if err != nil {
		writeConfigError(w, r, err, nil)
		return
	}
	var current *config.Entry
	if _, ok := a.configTypes.Load(name); !ok {
		if current, err = s.Get(r.Context(), name); err != nil && !errors.Is(err, config.ErrNotFound) {
			writeConfigError(w, r, err, nil)
			return
		}
	}
	t, err := a.configType(current, name)
	if err != nil {
		writeConfigError(w, r, err, nil)
		return
	}
	msg := t.New().Interface()
	if err := protojson.Unmarshal(body, msg); err != nil {
		writeConfigError(w, r, fmt.Errorf("%w: not a %s in protojson: %w", config.ErrInvalid, t.Descriptor().FullName(), err), nil)
		return
	}
	v, err := s.Set(r.Context(), name, msg, expect, writer)
	if err != nil {
		writeConfigError(w, r, err, s)
		return
	}
	writeAdminJSON(w, http.StatusOK, &ConfigWrite{Name: name, Version: v, Replaced: expect})
}

func (a *App) serveConfigRollback(w http.ResponseWriter, r *http.Request, writer string) {
	name := r.PathValue("name")
	version, err := uintParam(r, "version")
	if err != nil {
		writeConfigError(w, r, err, nil)
		return
	}
	expect, err := uintParam(r, "expect")
	if err != nil {
		writeConfigError(w, r, err, nil)
		return
	}
	s, err := a.configStore(r.Context())
	if err != nil {
		writeConfigError(w, r, err, nil)
		return
	}
	v, err := s.Rollback(r.Context(), name, version, expect, writer)
	if err != nil {
		writeConfigError(w, r, err, s)
		return
	}
	writeAdminJSON(w, http.StatusOK, &ConfigWrite{Name: name, Version: v, Replaced: expect, Restored: version})
}

// configEntry renders a stored version with its value as protojson.
func (a *App) configEntry(e *config.Entry) (*ConfigEntry, error) {
	t, err := protoregistry.GlobalTypes.FindMessageByName(e.Type)
	if err != nil {
		if t, err = a.configType(nil, e.Name); err != nil || t.Descriptor().FullName() != e.Type {
			return nil, fmt.Errorf("%w: %s version %d: its type %s is not linked into this App", config.ErrNotFound, e.Name, e.Version, e.Type)
		}
	}
	msg := t.New().Interface()
	if err := e.Unmarshal(msg); err != nil {
		return nil, err
	}
	value, err := protojson.Marshal(msg)
	if err != nil {
		return nil, fmt.Errorf("%w: %s version %d: %w", config.ErrCorrupt, e.Name, e.Version, err)
	}
	return &ConfigEntry{Name: e.Name, Version: e.Version, Type: string(e.Type), Writer: e.Writer, Time: e.Time.UTC(), Value: value}, nil
}

// uintParam reads a required unsigned query parameter.
func uintParam(r *http.Request, key string) (uint64, error) {
	q := r.URL.Query()
	if !q.Has(key) {
		return 0, fmt.Errorf("%w: the query parameter %s is required", config.ErrInvalid, key)
	}
	v, err := strconv.ParseUint(q.Get(key), 10, 64)
	if err != nil {
		return 0, fmt.Errorf("%w: %s: %w", config.ErrInvalid, key, err)
	}
	return v, nil
}

// writeConfigError answers err with its status code; for a conflict it
// reads the current version with s (if not nil) to name it.
func writeConfigError(w http.ResponseWriter, r *http.Request, err error, s *config.Store) {
	out := &AdminError{Error: err.Error()}
	code := http.StatusServiceUnavailable
	var verr *protovalidate.ValidationError
	switch {
	case errors.Is(err, config.ErrInvalid):
		code = http.StatusBadRequest
		if errors.As(err, &verr) {
			for _, v := range verr.Violations {
				out.Violations = append(out.Violations, protovalidate.FieldPathString(v.Proto.GetField())+": "+v.Proto.GetMessage())
			}
		}
	case errors.Is(err, config.ErrConflict):
		code = http.StatusConflict
		if s != nil {
			if e, gerr := s.Get(r.Context(), r.PathValue("name")); gerr == nil {
				out.Current = e.Version
			}
		}
	case errors.Is(err, config.ErrNotFound):
		code = http.StatusNotFound
	case errors.Is(err, config.ErrCorrupt):
		code = http.StatusInternalServerError
	}
	writeAdminJSON(w, code, out)
}
