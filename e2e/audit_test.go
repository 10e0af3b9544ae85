package e2e

import (
	"bytes"
	"context"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"parley/internal/eventually"
)

// clientFrom is an HTTP client whose connections leave from the loopback
// address ip, so the node sees each actor at an address of its own.
func clientFrom(ip string) *http.Client {
	return &http.Client{Timeout: 15 * time.Second, Transport: &http.Transport{DialContext: from(ip).DialContext}}
}

// call is api through client c; the reply's body decodes into out on 200.
func call(t testing.TB, c *http.Client, nd *nodeProc, method, path, token string, body, out any) (int, string) {
	t.Helper()
	var rd io.Reader
	if body != nil {
		b, _ := json.Marshal(body)
		rd = bytes.NewReader(b)
	}
	req, _ := http.NewRequestWithContext(context.Background(), method, nd.URL+path, rd)
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	resp, err := c.Do(req)
	if err != nil {
		t.Fatalf("%s %s: %v", method, path, err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	if resp.StatusCode != 200 {
		var e struct {
			Error struct{ Code string } `json:"error"`
		}
		json.Unmarshal(b, &e)
		return resp.StatusCode, e.Error.Code
	}
	if out != nil {
		if err := json.Unmarshal(b, out); err != nil {
			t.Fatalf("%s %s: %v", method, path, err)
		}
	}
	return 200, ""
}

type auditEntry struct {
	Seq   uint64    `json:"seq"`
	Index uint64    `json:"index"`
	At    time.Time `json:"at"`
	Actor struct {
		Kind, Workspace, ID, Email string
	} `json:"actor"`
	Address   string   `json:"address"`
	Route     string   `json:"route"`
	Action    string   `json:"action"`
	Workspace string   `json:"workspace"`
	Target    string   `json:"target"`
	Fields    []string `json:"fields"`
	Outcome   string   `json:"outcome"`
}

func (e auditEntry) String() string {
	who := e.Actor.Kind + ":" + e.Actor.ID + e.Actor.Email
	return fmt.Sprintf("%s %s@%s %s %s", e.Action, who, e.Address, e.Route, e.Outcome)
}

type auditPage struct {
	Entries []auditEntry `json:"entries"`
	Next    uint64       `json:"next"`
}

// TestAuditLogAcrossNodes: admin actions, sign-ins and refused attempts
// made through one node, from several client addresses, are read on the
// other node with who made each, from which address, through which route
// and how it ended; pages follow each other; parleyctl shows them; and no
// password, token or key used is in any node's Raft files or logs.
func TestAuditLogAcrossNodes(t *testing.T) {
	tc := startCluster(t, 2)
	n1, n2 := tc.nodes[0], tc.nodes[1]
	rootC, annC, guessC, bobC := clientFrom("127.0.0.2"), clientFrom("127.0.0.3"), clientFrom("127.0.0.4"), clientFrom("127.0.0.5")
	const annPassword, bobPassword, wrongPassword = "ann's canary passphrase 5d1", "bob's canary passphrase 77e", "wrong canary passphrase 0b3"

	var created struct {
		IdentitySecret string `json:"identity_secret"`
	}
	if st, code := call(t, rootC, n1, "POST", "/v1/admin/workspaces", tc.root, map[string]any{"id": "acme", "name": "Acme", "plan": "team"}, &created); st != 200 {
		t.Fatalf("create workspace: %d %s", st, code)
	}
	var inv struct{ Index uint64 }
	for _, o := range []map[string]any{
		{"id": "ann", "email": "ann@acme.test", "name": "Ann", "role": "admin", "password": annPassword},
		{"id": "bob", "email": "bob@acme.test", "name": "Bob", "role": "agent", "password": bobPassword},
	} {
		if st, code := call(t, rootC, n1, "POST", "/v1/admin/workspaces/acme/operators", tc.root, o, &inv); st != 200 {
			t.Fatalf("invite %s: %d %s", o["id"], st, code)
		}
	}
	var login struct{ Token string }
	if st, code := call(t, annC, n1, "POST", "/v1/login", "", map[string]any{"workspace": "acme", "email": "ann@acme.test", "password": annPassword}, &login); st != 200 {
		t.Fatalf("ann signs in: %d %s", st, code)
	}
	annToken := login.Token
	if st, code := call(t, guessC, n1, "POST", "/v1/login", "", map[string]any{"workspace": "acme", "email": "ann@acme.test", "password": wrongPassword}, nil); st != 401 {
		t.Fatalf("a wrong password: %d %s", st, code)
	}
	if st, code := call(t, bobC, n1, "POST", "/v1/login", "", map[string]any{"workspace": "acme", "email": "bob@acme.test", "password": bobPassword}, &login); st != 200 {
		t.Fatalf("bob signs in: %d %s", st, code)
	}
	bobToken := login.Token
	var minted struct {
		Key  string
		Info struct{ ID string }
	}
	if st, code := call(t, annC, n1, "POST", "/v1/admin/workspaces/acme/keys", annToken, map[string]any{"name": "integration"}, &minted); st != 200 {
		t.Fatalf("ann mints a key: %d %s", st, code)
	}
	if st, code := call(t, bobC, n1, "POST", "/v1/admin/workspaces/acme/keys", bobToken, map[string]any{"name": "mine"}, nil); st != 403 {
		t.Fatalf("bob (agent) mints a key: %d %s", st, code)
	}
	if st, code := call(t, bobC, n1, "DELETE", "/v1/admin/workspaces/acme/operators/ann", bobToken, nil, nil); st != 403 {
		t.Fatalf("bob (agent) removes ann: %d %s", st, code)
	}
	if st, code := call(t, annC, n1, "DELETE", "/v1/admin/workspaces/acme/keys/"+minted.Info.ID, annToken, nil, nil); st != 200 {
		t.Fatalf("ann revokes the key: %d %s", st, code)
	}

	// Read on the other node, as ann (a workspace admin).
	want := []string{
		"create_workspace root:@127.0.0.2 POST /v1/admin/workspaces ok",
		"set_secret root:@127.0.0.2 POST /v1/admin/workspaces ok",
		"set_secret root:@127.0.0.2 POST /v1/admin/workspaces ok",
		"create_operator root:@127.0.0.2 POST /v1/admin/workspaces/{ws}/operators ok",
		"create_operator root:@127.0.0.2 POST /v1/admin/workspaces/{ws}/operators ok",
		"create_session operator:ann@127.0.0.3 POST /v1/login ok",
		"create_session anonymous:ann@acme.test@127.0.0.4 POST /v1/login unauthorized",
		"create_session operator:bob@127.0.0.5 POST /v1/login ok",
		"create_key operator:ann@127.0.0.3 POST /v1/admin/workspaces/{ws}/keys ok",
		"request operator:bob@127.0.0.5 POST /v1/admin/workspaces/{ws}/keys forbidden",
		"request operator:bob@127.0.0.5 DELETE /v1/admin/workspaces/{ws}/operators/{id} forbidden",
		"revoke_key operator:ann@127.0.0.3 DELETE /v1/admin/workspaces/{ws}/keys/{id} ok",
	}
	var got []auditEntry
	eventually.Holds(t, 20*time.Second, "the audit log on n2 holds every action made on n1", func() error {
		var p auditPage
		if st, code := call(t, annC, n2, "GET", "/v1/admin/workspaces/acme/audit?limit=1000", annToken, nil, &p); st != 200 {
			return fmt.Errorf("read: %d %s", st, code)
		}
		got = p.Entries
		var lines []string
		for i := len(got) - 1; i >= 0; i-- {
			lines = append(lines, got[i].String())
		}
		if !slices.Equal(lines, want) {
			return fmt.Errorf("entries, oldest first:\n%s", strings.Join(lines, "\n"))
		}
		return nil
	})
	for _, e := range got {
		if e.Workspace != "acme" || e.At.IsZero() || e.Index == 0 {
			t.Errorf("entry %v: workspace %q at %v index %d", e, e.Workspace, e.At, e.Index)
		}
	}
	if k := got[3]; k.Target != minted.Info.ID {
		t.Errorf("create_key's target %q, want the key's ID %s", k.Target, minted.Info.ID)
	}
	if r := got[0]; r.Target != minted.Info.ID {
		t.Errorf("revoke_key's target %q, want the key's ID %s", r.Target, minted.Info.ID)
	}
	if st, _ := call(t, bobC, n2, "GET", "/v1/admin/workspaces/acme/audit", bobToken, nil, nil); st != 403 {
		t.Fatalf("an agent reads the audit log: %d", st)
	}

	// The refused read is recorded too (on the leader first: wait for n2).
	var all auditPage
	eventually.Holds(t, 10*time.Second, "bob's refused read in the log on n2", func() error {
		all = auditPage{} // decoding into the last page would keep its fields
		call(t, rootC, n2, "GET", "/v1/admin/audit?workspace=acme&limit=1000", tc.root, nil, &all)
		if len(all.Entries) == 0 || all.Entries[0].String() != "request operator:bob@127.0.0.5 GET /v1/admin/workspaces/{ws}/audit forbidden" {
			return fmt.Errorf("newest %v", all.Entries[:min(1, len(all.Entries))])
		}
		return nil
	})

	// Both nodes hold the same entries, number for number.
	eventually.Holds(t, 10*time.Second, "n1's log equals n2's", func() error {
		var other auditPage
		call(t, rootC, n1, "GET", "/v1/admin/audit?workspace=acme&limit=1000", tc.root, nil, &other)
		a, _ := json.Marshal(other.Entries)
		b, _ := json.Marshal(all.Entries)
		if !bytes.Equal(a, b) {
			return fmt.Errorf("n1:\n%s\nn2:\n%s", a, b)
		}
		return nil
	})

	// Pages of 5 on n2 follow each other without gap or repeat.
	var paged []uint64
	cursor := ""
	for range 10 {
		var p auditPage
		if st, code := call(t, rootC, n2, "GET", "/v1/admin/audit?workspace=acme&limit=5"+cursor, tc.root, nil, &p); st != 200 {
			t.Fatalf("page: %d %s", st, code)
		}
		for _, e := range p.Entries {
			paged = append(paged, e.Seq)
		}
		if p.Next == 0 {
			break
		}
		cursor = fmt.Sprintf("&before=%d", p.Next)
	}
	var seqs []uint64
	for _, e := range all.Entries {
		seqs = append(seqs, e.Seq)
	}
	if len(seqs) < len(want)+1 || !slices.Equal(paged, seqs) {
		t.Fatalf("paged seqs %v, whole %v", paged, seqs)
	}

	// parleyctl, against n2, as ann.
	out := newCtl(t).ok("-node", n2.URL, "-token", annToken, "audit", "-workspace", "acme", "-actor", "bob")
	if !strings.Contains(out.stdout, "forbidden") || !strings.Contains(out.stdout, "127.0.0.5") || !strings.Contains(out.stdout, "operator acme/bob") {
		t.Fatalf("parleyctl audit -actor bob:\n%s", out.stdout)
	}

	// No secret anywhere: snapshot both nodes (the log's entries move to
	// the snapshot), then scan every file of their Raft directories and
	// their logs.
	for _, nd := range tc.nodes {
		mustAPI(t, nd, "POST", "/v1/admin/cluster/snapshot", tc.root, nil, nil)
	}
	secrets := map[string]string{
		"ann's password": annPassword, "bob's password": bobPassword, "the wrong password": wrongPassword,
		"ann's token": annToken, "bob's token": bobToken, "the API key": minted.Key, "the identity secret": created.IdentitySecret,
	}
	seen := false
	for _, nd := range tc.nodes {
		files := map[string][]byte{"log": []byte(nd.Logs())}
		filepath.WalkDir(nd.DataDir, func(p string, d fs.DirEntry, err error) error {
			if err == nil && !d.IsDir() {
				b, _ := os.ReadFile(p)
				files[p] = b
			}
			return nil
		})
		for name, b := range files {
			seen = seen || bytes.Contains(b, []byte("127.0.0.5"))
			for what, s := range secrets {
				for _, spelling := range []string{s, base64.StdEncoding.EncodeToString([]byte(s)), strings.TrimRight(base64.URLEncoding.EncodeToString([]byte(s)), "=")} {
					if bytes.Contains(b, []byte(spelling)) {
						t.Errorf("%s: %s holds %s", nd.Addr, name, what)
					}
				}
			}
		}
	}
	if !seen {
		t.Fatal("no file holds the audit entries: the scan scanned nothing")
	}
}

// TestAuditRetention: a node keeps entries for -audit-retention, and its
// leader then prunes them.
func TestAuditRetention(t *testing.T) {
	tc := startCluster(t, 1, "-audit-retention", "10s")
	nd := tc.nodes[0]
	mustAPI(t, nd, "PUT", "/v1/admin/plans/gold", tc.root, map[string]any{"seats": 3}, nil)
	count := func() (int, error) {
		var p auditPage
		if st, code := api(nd, "GET", "/v1/admin/audit?action=set_plan", tc.root, nil, &p); st != 200 {
			return 0, fmt.Errorf("%d %s", st, code)
		}
		return len(p.Entries), nil
	}
	if n, err := count(); err != nil || n != 1 {
		t.Fatalf("set_plan entries right after: %d, %v", n, err)
	}
	eventually.Holds(t, 40*time.Second, "the entry pruned after the retention", func() error {
		n, err := count()
		if err == nil && n != 0 {
			err = errors.New("still there")
		}
		return err
	})
}
