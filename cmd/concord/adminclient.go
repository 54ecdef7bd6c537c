package main

import (
	"cmp"
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strings"

	"github.com/concordrpc/concord"
	"github.com/concordrpc/concord/coord"
	"github.com/concordrpc/concord/internal/admincreds"
)

// adminClient calls a running app's admin routes with an admin
// credential.
type adminClient struct {
	base  string // the listener's base URL, without a trailing slash
	token string // sent as a bearer token
}

// adminFlags defines the flags of the commands that call an app's admin
// routes: -addr, -creds (default $CONCORD_ADMIN_CREDS, else the admin
// credentials file in the default data directory) and -as.
func adminFlags(fs *flag.FlagSet) (addr, creds, as *string) {
	addr = fs.String("addr", "http://127.0.0.1:9080", "base URL of a running app's admin listener (its -admin address)")
	creds = fs.String("creds", cmp.Or(os.Getenv("CONCORD_ADMIN_CREDS"), filepath.Join(coord.DefaultDataDir, concord.AdminCredentialsFile)),
		"admin credentials file of the app (lines of \"name token\"; env CONCORD_ADMIN_CREDS); an app creates "+concord.AdminCredentialsFile+" in its data directory")
	as = fs.String("as", "", "the name of the credential to use, when the file holds several")
	return addr, creds, as
}

// newAdminClient reads the credential from the file creds (the one named
// as, if the file holds several) for the admin listener at addr.
func newAdminClient(addr, creds, as string) (*adminClient, error) {
	cs, err := admincreds.Read(creds)
	if err != nil {
		return nil, fmt.Errorf("admin credentials: %w (-creds names the file; an app writes %s in its data directory)", err, concord.AdminCredentialsFile)
	}
	cred, err := admincreds.Pick(cs, as)
	if err != nil {
		return nil, usageError{fmt.Sprintf("-creds %s: %v (-as NAME picks one)", creds, err)}
	}
	base := strings.TrimSuffix(addr, "/")
	if !strings.Contains(base, "://") {
		base = "http://" + base
	}
	return &adminClient{base: base, token: cred.Token}, nil
}

// adminError is an admin route's error answer.
type adminError struct {
	code  int
	msg   string
	route bool               // the answer came from the route (JSON {"error"}), not a listener without it
	body  concord.AdminError // the route's answer, when route is set
}

func (e *adminError) Error() string { return e.msg }

// do sends a request to path, with body (JSON) if not nil, and decodes
// the JSON answer into out, also for an error answer; a status other than
// 200 is an *adminError.
func (c *adminClient) do(ctx context.Context, method, path string, body io.Reader, out any) error {
	req, err := http.NewRequestWithContext(ctx, method, c.base+path, body)
	if err != nil {
		return usageError{fmt.Sprintf("-addr: %v", err)}
	}
	req.Header.Set("Authorization", "Bearer "+c.token)
	req.Header.Set("Accept", "application/json")
	if body != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	res, err := http.DefaultClient.Do(req)
	if err != nil {
		return err
	}
	defer res.Body.Close()
	data, err := io.ReadAll(io.LimitReader(res.Body, 8<<20))
	if err != nil {
		return err
	}
	if res.StatusCode != http.StatusOK {
		var e concord.AdminError
		route, _, _ := strings.Cut(path, "?")
		if json.Unmarshal(data, &e) != nil || e.Error == "" {
			return &adminError{code: res.StatusCode, msg: fmt.Sprintf("%s answered %s (is it a Concord app's admin listener, of a version with %s?)", c.base, res.Status, route)}
		}
		_ = json.Unmarshal(data, out)
		return &adminError{code: res.StatusCode, msg: e.Error, route: true, body: e}
	}
	if err := json.Unmarshal(data, out); err != nil {
		return fmt.Errorf("%s answered %s without the expected JSON: %w", c.base, res.Status, err)
	}
	return nil
}
