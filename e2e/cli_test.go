package e2e

import (
	"bytes"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"testing"
	"time"

	"parley/cluster/schema"
)

// ctlBin is parleyctl, built once for the tests that drive it.
var (
	ctlOnce sync.Once
	ctlBin  string
	ctlErr  error
)

// buildCtl builds cmd/parleyctl (with -race, like the node, so the
// packages they share are compiled once) next to the node binary, whose
// directory TestMain removes at the end: not in the first caller's
// t.TempDir, as a later test may need the binary too.
func buildCtl(t *testing.T) string {
	t.Helper()
	ctlOnce.Do(func() {
		dir := filepath.Join(filepath.Dir(parleyBin), "ctl")
		if ctlErr = os.MkdirAll(dir, 0o755); ctlErr != nil {
			return
		}
		ctlBin = filepath.Join(dir, "parleyctl")
		out, err := exec.Command("go", "build", "-race", "-o", ctlBin, "../cmd/parleyctl").CombinedOutput()
		if err != nil {
			ctlErr = fmt.Errorf("building parleyctl: %v\n%s", err, out)
		}
	})
	if ctlErr != nil {
		t.Fatal(ctlErr)
	}
	return ctlBin
}

// ctl runs parleyctl in its own working directory, with no PARLEY_*
// variables from the test's environment.
type ctl struct {
	t   *testing.T
	bin string
	dir string
}

type ctlResult struct {
	stdout, stderr string
	code           int
}

func (r ctlResult) String() string {
	return fmt.Sprintf("exit %d\nstdout:\n%s\nstderr:\n%s", r.code, r.stdout, r.stderr)
}

func newCtl(t *testing.T) *ctl {
	return &ctl{t: t, bin: buildCtl(t), dir: t.TempDir()}
}

// run runs parleyctl with args, stdin as its input.
func (c *ctl) run(stdin string, args ...string) ctlResult {
	c.t.Helper()
	cmd := exec.Command(c.bin, args...)
	cmd.Dir = c.dir
	for _, kv := range os.Environ() {
		if !strings.HasPrefix(kv, "PARLEY_") {
			cmd.Env = append(cmd.Env, kv)
		}
	}
	var out, errb bytes.Buffer
	cmd.Stdin, cmd.Stdout, cmd.Stderr = strings.NewReader(stdin), &out, &errb
	err := cmd.Run()
	r := ctlResult{stdout: out.String(), stderr: errb.String()}
	if ee, ok := err.(*exec.ExitError); ok {
		r.code = ee.ExitCode()
	} else if err != nil {
		c.t.Fatalf("parleyctl %v: %v", args, err)
	}
	return r
}

// ok runs parleyctl and fails the test unless it exits 0.
func (c *ctl) ok(args ...string) ctlResult {
	c.t.Helper()
	r := c.run("", args...)
	if r.code != 0 {
		c.t.Fatalf("parleyctl %s: %s", strings.Join(args, " "), r)
	}
	return r
}

// fails runs parleyctl and checks its exit status and that stderr holds
// every one of want.
func (c *ctl) fails(code int, want []string, args ...string) ctlResult {
	c.t.Helper()
	r := c.run("", args...)
	if r.code != code {
		c.t.Fatalf("parleyctl %s: exit %d, want %d\n%s", strings.Join(args, " "), r.code, code, r)
	}
	for _, w := range want {
		if !strings.Contains(r.stderr, w) {
			c.t.Errorf("parleyctl %s: stderr lacks %q\n%s", strings.Join(args, " "), w, r)
		}
	}
	return r
}

func match(t *testing.T, re, s string) string {
	t.Helper()
	m := regexp.MustCompile(re).FindStringSubmatch(s)
	if m == nil {
		t.Fatalf("no %s in:\n%s", re, s)
	}
	return m[1]
}

// TestCLICluster drives a three-node cluster (regions eu, us, ap) with
// parleyctl only, each step through a different node: a workspace pinned to
// eu, an admin operator who signs in and mints an API key, the key used on
// every node, revoked, and then refused on every node; usage, billing,
// cluster status; and the exit statuses of wrong command lines (2, nothing
// sent) and of refused requests (1).
func TestCLICluster(t *testing.T) {
	c := newCtl(t)

	// Wrong command lines: exit 2 before any request (no node runs yet).
	nowhere := "-node=http://127.0.0.1:1"
	c.fails(2, []string{`workspace id "Bad!"`, "want 1 to 64 of a-z 0-9 _ -", "usage: parleyctl workspace create"},
		nowhere, "-token=x", "workspace", "create", "-id", "Bad!", "-name", "Bad")
	c.fails(2, []string{`period "2026-13"`, "want YYYY-MM"}, nowhere, "-token=x", "usage", "-workspace", "acme", "-period", "2026-13")
	c.fails(2, []string{"-workspace is required"}, nowhere, "-token=x", "key", "list")
	c.fails(2, []string{`key id "k_123"`}, nowhere, "-token=x", "key", "revoke", "-workspace", "acme", "k_123")
	c.fails(2, []string{`unknown command "frobnicate"`}, "frobnicate")
	c.fails(2, []string{"workspace has: create, list, show"}, "workspace", "frobnicate")
	c.fails(2, []string{"flag provided but not defined: -colour"}, "workspaces", "-colour")
	c.fails(2, []string{"no credential", "-cluster-key"}, nowhere, "workspaces")
	c.fails(2, []string{"password of 3 bytes"}, nowhere, "login", "-workspace", "acme", "-email", "bob@acme.test", "-password", "abc")
	// A node that is not there is exit 1, not 2.
	c.fails(1, []string{"cannot reach the node at http://127.0.0.1:1"}, nowhere, "-token=x", "workspaces")

	tc := startCluster(t, 3)
	n1, n2, n3 := tc.nodes[0], tc.nodes[1], tc.nodes[2]
	root := func(nd *nodeProc, args ...string) []string {
		return append([]string{"-node", nd.URL, "-cluster-key", tc.keyFile}, args...)
	}
	as := func(nd *nodeProc, token string, args ...string) []string {
		return append([]string{"-node", nd.URL, "-token", token}, args...)
	}

	if got := strings.TrimSpace(c.ok("-cluster-key", tc.keyFile, "token").stdout); got != tc.root {
		t.Fatalf("token: %q, want the admin token derived from the key", got)
	}

	// A workspace pinned to eu; the identity secret is printed once.
	r := c.ok(root(n2, "workspace", "create", "-id", "acme", "-name", "Acme Inc", "-region", "eu", "-plan", "team")...)
	secret := match(t, `identity secret\s+([0-9a-f]{64})`, r.stdout)
	// Once: no command shows it again.
	if out := c.ok(root(n3, "workspace", "secrets", "acme")...).stdout; strings.Contains(out, secret) || !strings.Contains(out, "rotated") {
		t.Fatalf("workspace secrets:\n%s", out)
	}
	if out := c.ok(root(n3, "-json", "workspace", "secrets", "acme")...).stdout; strings.Contains(out, secret) {
		t.Fatalf("workspace secrets -json shows the secret:\n%s", out)
	}
	var ws struct{ Region, Plan string }
	mustAPI(t, n2, "GET", "/v1/admin/workspaces/acme", tc.root, nil, &ws)
	if ws.Region != "eu" || ws.Plan != "team" {
		t.Fatalf("workspace created as %+v, want region eu, plan team", ws)
	}
	if out := c.ok(root(n2, "workspaces")...).stdout; !regexp.MustCompile(`(?m)^acme\s+Acme Inc\s+eu\s+team`).MatchString(out) {
		t.Fatalf("workspace list:\n%s", out)
	}

	// An admin operator with a one-time password signs in on another node,
	// which first catches up to the invitation's log index.
	r = c.ok(root(n2, "-json", "operator", "invite", "-workspace", "acme", "-email", "bob@acme.test", "-name", "Bob", "-role", "admin")...)
	var inv struct {
		Operator struct{ ID, Role string } `json:"operator"`
		Password string                    `json:"password"`
		Index    uint64                    `json:"index"`
	}
	if err := json.Unmarshal([]byte(r.stdout), &inv); err != nil || inv.Password == "" || inv.Index == 0 || inv.Operator.ID != "bob" {
		t.Fatalf("invite -json: %v %+v\n%s", err, inv, r)
	}
	r = c.run(inv.Password+"\n", "-node", n3.URL, "-min-index", fmt.Sprint(inv.Index),
		"login", "-workspace", "acme", "-email", "bob@acme.test", "-password-stdin")
	if r.code != 0 {
		t.Fatalf("login: %s", r)
	}
	session := strings.TrimSpace(r.stdout)
	sessionID := match(t, `session (s_[0-9a-f]{24}) of bob in acme`, r.stderr)
	c.fails(1, []string{"wrong workspace, email or password", "HTTP 401"}, "-node", n3.URL, "login", "-workspace", "acme", "-email", "bob@acme.test", "-password", "not-the-password")

	// The operator mints a key (on the node that opened the session: the
	// login reply has no log index to make another node wait for it); the
	// key works on every node at once.
	r = c.ok(as(n3, session, "key", "mint", "-workspace", "acme", "-name", "integration")...)
	key := match(t, `(?m)^key\s+(pk_\S+)$`, r.stdout)
	keyID := match(t, `(?m)^id\s+(k_[0-9a-f]{24})$`, r.stdout)
	for _, nd := range tc.nodes {
		if out := c.ok(as(nd, key, "workspace", "show", "acme")...).stdout; !regexp.MustCompile(`(?m)^region\s+eu$`).MatchString(out) {
			t.Fatalf("workspace show with the key on %s:\n%s", nd.Addr, out)
		}
	}
	// A key may not mint keys, nor act cluster-wide.
	c.fails(1, []string{"forbidden", "HTTP 403"}, as(n2, key, "key", "mint", "-workspace", "acme", "-name", "second")...)
	c.fails(1, []string{"forbidden", "HTTP 403"}, as(n2, key, "cluster", "status")...)
	// Nor rotate the identity secret; the admin's session does, and the
	// new secret is printed once.
	c.fails(1, []string{"forbidden", "HTTP 403"}, as(n2, key, "workspace", "rotate-secret", "acme", "-overlap", "1h")...)
	c.fails(2, []string{"-overlap is required"}, as(n2, session, "workspace", "rotate-secret", "acme")...)
	r = c.ok(as(n3, session, "workspace", "rotate-secret", "acme", "-overlap", "1h")...)
	if rotated := match(t, `identity secret\s+([0-9a-f]{64})`, r.stdout); rotated == secret || !strings.Contains(r.stdout, "old secret until") {
		t.Fatalf("workspace rotate-secret:\n%s", r)
	}

	// Revoked through n3: every node confirms, and every node refuses it.
	r = c.ok(root(n3, "key", "revoke", "-workspace", "acme", keyID)...)
	confirmed := match(t, `(?m)^confirmed by:\s+(.*)$`, r.stdout)
	for _, id := range []string{"n1", "n2", "n3"} {
		if !strings.Contains(confirmed, id) {
			t.Errorf("revoke confirmed by %q, want every node (%s missing)\n%s", confirmed, id, r)
		}
	}
	for _, nd := range tc.nodes {
		c.fails(1, []string{"revoked", "HTTP 401"}, as(nd, key, "workspace", "show", "acme")...)
	}
	if out := c.ok(root(n1, "key", "list", "-workspace", "acme")...).stdout; !regexp.MustCompile(keyID + `\s+integration\s+.*revoked`).MatchString(out) {
		t.Fatalf("key list after the revocation:\n%s", out)
	}

	// The session is revoked the same way.
	r = c.ok(root(n1, "session", "revoke", "-workspace", "acme", sessionID)...)
	if !strings.Contains(r.stdout, "every node has applied it") {
		t.Errorf("session revoke:\n%s", r)
	}
	for _, nd := range tc.nodes {
		c.fails(1, []string{"revoked", "HTTP 401"}, as(nd, session, "operator", "list", "-workspace", "acme")...)
	}

	// Usage against the plan, this month by default.
	r = c.ok(root(n3, "usage", "-workspace", "acme")...)
	for _, re := range []string{`(?m)^period\s+` + time.Now().UTC().Format("2006-01") + `$`, `(?m)^plan\s+team$`, `(?m)^messages\s+\d+ of 250000$`} {
		if !regexp.MustCompile(re).MatchString(r.stdout) {
			t.Errorf("usage lacks %s:\n%s", re, r.stdout)
		}
	}

	// Billing events apply once per idempotency key, whichever node.
	if out := c.ok(root(n1, "billing", "record", "-workspace", "acme", "-key", "inv-1", "-kind", "charge", "-amount", "1200", "-currency", "EUR")...).stdout; !strings.HasPrefix(out, "recorded inv-1") {
		t.Fatalf("billing record: %s", out)
	}
	if out := c.ok(root(n2, "billing", "record", "-workspace", "acme", "-key", "inv-1", "-kind", "charge", "-amount", "1200", "-currency", "EUR")...).stdout; !strings.HasPrefix(out, "duplicate") {
		t.Fatalf("billing record retried: %s", out)
	}

	// Cluster status names the leader and every member with its region.
	var info struct {
		Raft struct {
			LeaderID string `json:"leader_id"`
		} `json:"raft"`
	}
	mustAPI(t, n1, "GET", "/v1/admin/cluster", tc.root, nil, &info)
	r = c.ok(root(n1, "cluster", "status")...)
	if info.Raft.LeaderID == "" || !regexp.MustCompile(`(?m)^leader\s+`+info.Raft.LeaderID+`$`).MatchString(r.stdout) {
		t.Errorf("cluster status does not name the leader %q:\n%s", info.Raft.LeaderID, r.stdout)
	}
	if want := fmt.Sprintf(`(?m)^protocol\s+this node %d \(works beside %d and later\); cluster `, schema.ProtocolVersion, schema.MinProtocolVersion); !regexp.MustCompile(want).MatchString(r.stdout) {
		t.Errorf("cluster status does not give the protocol versions:\n%s", r.stdout)
	}
	for i, region := range []string{"eu", "us", "ap"} {
		id := fmt.Sprintf("n%d", i+1)
		role := `voter`
		if id == info.Raft.LeaderID {
			role = `voter, leader`
		}
		row := fmt.Sprintf(`(?m)^%s\s+%s\s+%s\s+yes\s+%s\s`, id, role, region, regexp.QuoteMeta(tc.nodes[i].Addr))
		if !regexp.MustCompile(row).MatchString(r.stdout) {
			t.Errorf("cluster status lacks member %s (%s, %s):\n%s", id, role, region, r.stdout)
		}
	}

	// Refused requests: exit 1 with the API's code and status.
	c.fails(1, []string{`workspace "acme"`, "exists", "HTTP 409"}, root(n2, "workspace", "create", "-id", "acme", "-name", "Acme")...)
	c.fails(1, []string{`workspace "nosuch"`, "not_found", "HTTP 404"}, root(n3, "workspace", "show", "nosuch")...)
	c.fails(1, []string{"unauthorized", "HTTP 401"}, as(n1, "pk_not-a-key", "workspaces")...)

	// Where `make run` keeps the key (./data/cluster.key), no flag is
	// needed.
	if err := os.MkdirAll(filepath.Join(c.dir, "data"), 0o700); err != nil {
		t.Fatal(err)
	}
	b, _ := os.ReadFile(tc.keyFile)
	if err := os.WriteFile(filepath.Join(c.dir, "data", "cluster.key"), b, 0o600); err != nil {
		t.Fatal(err)
	}
	if out := c.ok("-node", n1.URL, "workspaces").stdout; !strings.Contains(out, "acme") {
		t.Fatalf("workspaces with ./data/cluster.key:\n%s", out)
	}
}

// TestCLIWebhooks: parleyctl manages a workspace's webhook endpoints; the
// signing secret is printed by create and rotate only.
func TestCLIWebhooks(t *testing.T) {
	c := newCtl(t)
	nowhere := "-node=http://127.0.0.1:1"
	c.fails(2, []string{"webhook url", "usage: parleyctl webhook create"}, nowhere, "-token=x", "webhook", "create", "-workspace", "acme", "-url", "ftp://crm.example/", "-events", "message.created")
	c.fails(2, []string{`webhook event "message.sent"`}, nowhere, "-token=x", "webhook", "create", "-workspace", "acme", "-url", "https://crm.example/", "-events", "message.sent")
	c.fails(2, []string{`event id "evt_1"`}, nowhere, "-token=x", "webhook", "redeliver", "-workspace", "acme", "-event", "evt_1", "wh_1")

	tc := startCluster(t, 1)
	nd := tc.nodes[0]
	root := func(args ...string) []string {
		return append([]string{"-node", nd.URL, "-cluster-key", tc.keyFile}, args...)
	}
	c.ok(root("workspace", "create", "-id", "acme", "-name", "Acme")...)
	// A literal loopback address is refused by the node (it runs without
	// -webhook-allow-private).
	c.fails(1, []string{"invalid", "HTTP 400"}, root("webhook", "create", "-workspace", "acme", "-url", "http://127.0.0.1:9/", "-events", "message.created")...)
	r := c.ok(root("webhook", "create", "-workspace", "acme", "-url", "https://crm.example/hook", "-events", "message.created,conversation.assigned")...)
	secret := match(t, `(?m)^secret\s+(whsec_[0-9a-f]{64})$`, r.stdout)
	id := match(t, `(?m)^id\s+(wh_[0-9a-f]+)$`, r.stdout)
	out := c.ok(root("webhook", "list", "-workspace", "acme")...).stdout
	if !regexp.MustCompile(id+`\s+https://crm.example/hook\s+message.created,conversation.assigned\s+never\s+0`).MatchString(out) || strings.Contains(out, secret) {
		t.Fatalf("webhook list:\n%s", out)
	}
	if out := c.ok(root("-json", "webhook", "list", "-workspace", "acme")...).stdout; strings.Contains(out, secret) {
		t.Fatalf("webhook list -json shows the secret:\n%s", out)
	}
	c.fails(2, []string{"-overlap is required"}, root("webhook", "rotate", "-workspace", "acme", id)...)
	r = c.ok(root("webhook", "rotate", "-workspace", "acme", "-overlap", "1h", id)...)
	if s2 := match(t, `(?m)^secret\s+(whsec_[0-9a-f]{64})$`, r.stdout); s2 == secret {
		t.Fatal("rotate printed the old secret")
	}
	if out := c.ok(root("webhook", "dead-letters", "-workspace", "acme", id)...).stdout; !strings.HasPrefix(out, "EVENT") {
		t.Fatalf("webhook dead-letters:\n%s", out)
	}
	c.ok(root("webhook", "redeliver", "-workspace", "acme", id)...)
	c.ok(root("webhook", "delete", "-workspace", "acme", id)...)
	if out := c.ok(root("webhook", "list", "-workspace", "acme")...).stdout; strings.Contains(out, id) {
		t.Fatalf("webhook list after delete:\n%s", out)
	}
	c.fails(1, []string{"not_found", "HTTP 404"}, root("webhook", "dead-letters", "-workspace", "acme", id)...)
}

// TestCLIEmail: parleyctl sets a workspace's SMTP settings with the
// password from stdin, shows them without it, rotates it, lists the
// deliveries and deletes the settings.
func TestCLIEmail(t *testing.T) {
	c := newCtl(t)
	nowhere := "-node=http://127.0.0.1:1"
	c.fails(2, []string{"tls", "usage: parleyctl email set"}, nowhere, "-token=x", "email", "set", "-workspace", "acme", "-host", "smtp.example", "-port", "587", "-tls", "ssl", "-from", "a@acme.test")
	tc := startCluster(t, 1)
	nd := tc.nodes[0]
	root := func(args ...string) []string {
		return append([]string{"-node", nd.URL, "-cluster-key", tc.keyFile}, args...)
	}
	c.ok(root("workspace", "create", "-id", "acme", "-name", "Acme")...)
	// tls none is refused by a node without -email-allow-plaintext.
	c.fails(1, []string{"invalid", "HTTP 400"}, root("email", "set", "-workspace", "acme", "-host", "127.0.0.1", "-port", "25", "-tls", "none", "-from", "help@acme.test")...)
	const secret = "SG.cli-secret-0123456789"
	r := c.run(secret+"\n", root("email", "set", "-workspace", "acme", "-host", "smtp.example", "-port", "587", "-tls", "starttls", "-user", "apikey", "-from", "help@acme.test", "-password-stdin")...)
	if r.code != 0 || !regexp.MustCompile(`(?m)^password set\s+true$`).MatchString(r.stdout) || strings.Contains(r.stdout, secret) {
		t.Fatalf("email set:\n%s", r)
	}
	for _, args := range [][]string{{"email", "show", "-workspace", "acme"}, {"-json", "email", "show", "-workspace", "acme"}} {
		if out := c.ok(root(args...)...).stdout; strings.Contains(out, secret) || !strings.Contains(out, "smtp.example") {
			t.Fatalf("%v:\n%s", args, out)
		}
	}
	// A change without -password-stdin keeps the password; a new one
	// replaces it.
	if out := c.ok(root("email", "set", "-workspace", "acme", "-host", "smtp2.example", "-port", "465", "-tls", "implicit", "-user", "apikey", "-from", "help@acme.test")...).stdout; !regexp.MustCompile(`(?m)^password set\s+true$`).MatchString(out) {
		t.Fatalf("a change without a password:\n%s", out)
	}
	if r := c.run("another-secret\n", root("email", "set", "-workspace", "acme", "-host", "smtp2.example", "-port", "465", "-tls", "implicit", "-from", "help@acme.test", "-password-stdin")...); r.code != 0 {
		t.Fatalf("rotating:\n%s", r)
	}
	if out := c.ok(root("email", "deliveries", "-workspace", "acme")...).stdout; !strings.HasPrefix(out, "CONVERSATION") {
		t.Fatalf("email deliveries:\n%s", out)
	}
	c.ok(root("email", "delete", "-workspace", "acme")...)
	c.fails(1, []string{"not_found", "HTTP 404"}, root("email", "show", "-workspace", "acme")...)
}
