package cluster

import (
	"bytes"
	"encoding/base64"
	"encoding/hex"
	"errors"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"
)

func audited(actor Actor, addr, route string, cmd Command) Audited {
	return Audited{Audit: Audit{Actor: actor, Address: addr, Route: route, At: t0}, Cmd: cmd}
}

var (
	rootActor = Actor{Kind: ActorRoot}
	annActor  = Actor{Kind: ActorOperator, Workspace: "acme", ID: "ann"}
	bobActor  = Actor{Kind: ActorOperator, Workspace: "acme", ID: "bob"}
)

// An audited command applies as it would alone, and the state machine
// records who, from where, what on which target, and how it ended: the
// apply's own error code.
func TestAuditRecordsCommandsWithOutcome(t *testing.T) {
	t.Parallel()
	h := newHarness(t)
	h.seed()
	keyHash := HashToken(APIKeyPrefix + "k")
	ok := h.must(audited(annActor, "127.0.0.2", "POST /v1/admin/workspaces/{ws}/keys", CreateKey{Hash: keyHash, Workspace: "acme", Name: "k", Created: t0}))
	if _, err := h.state().Key(KeyID(keyHash)); err != nil {
		t.Fatalf("the audited command was not applied: %v", err)
	}
	_, err := h.apply(audited(bobActor, "127.0.0.3", "DELETE /v1/admin/workspaces/{ws}/operators/{id}", DeleteOperator{Workspace: "acme", ID: "nobody"}))
	if !errors.Is(err, ErrNotFound) {
		t.Fatalf("audited delete of nobody: %v, want the command's own not_found", err)
	}
	h.must(audited(annActor, "::1", "PUT /v1/admin/workspaces/{ws}/operators/{id}/password", UpdateOperator{Workspace: "acme", ID: "bob", PasswordHash: ptr(testPasswordHash())}))
	h.must(audited(rootActor, "127.0.0.4", "PUT /v1/admin/plans/{name}", SetPlan{Plan: Plan{Name: "gold", Seats: 5}}))
	h.must(audited(rootActor, "127.0.0.4", "DELETE /v1/admin/workspaces/{ws}/keys/{id}", RevokeKey{ID: KeyID(keyHash)}))
	// Not audited: no entry.
	h.must(SetPlan{Plan: Plan{Name: "silver", Seats: 5}})

	acme := h.state().AuditLog(AuditQuery{Workspace: "acme"})
	want := []struct {
		action, target, outcome, addr string
		actor                         Actor
		fields                        []string
	}{
		{"revoke_key", KeyID(keyHash), "ok", "127.0.0.4", rootActor, nil},
		{"update_operator", "bob", "ok", "::1", annActor, []string{"password"}},
		{"delete_operator", "nobody", "not_found", "127.0.0.3", bobActor, nil},
		{"create_key", KeyID(keyHash), "ok", "127.0.0.2", annActor, nil},
	}
	if len(acme.Entries) != len(want) {
		t.Fatalf("acme's log: %+v", acme.Entries)
	}
	for i, w := range want {
		e := acme.Entries[i]
		if e.Action != w.action || e.Target != w.target || e.Outcome != w.outcome || e.Address != w.addr || e.Actor != w.actor || !slices.Equal(e.Fields, w.fields) || e.Workspace != "acme" || !e.At.Equal(t0) {
			t.Errorf("entry %d: %+v, want %+v", i, e, w)
		}
	}
	if acme.Entries[3].Index != ok.Index || acme.Entries[3].Seq != 1 || acme.Entries[0].Seq != 5 {
		t.Errorf("seq/index: %+v (create_key applied at %d)", acme.Entries, ok.Index)
	}
	cl := h.state().AuditLog(AuditQuery{})
	if len(cl.Entries) != 1 || cl.Entries[0].Action != "set_plan" || cl.Entries[0].Target != "gold" || cl.Entries[0].Workspace != "" {
		t.Fatalf("the cluster's log: %+v", cl.Entries)
	}
	if all := h.state().AuditLog(AuditQuery{All: true}); len(all.Entries) != 5 {
		t.Fatalf("every log: %d entries", len(all.Entries))
	}
}

// Pages follow each other without gap or repeat, newest first, and the
// filters select by actor, action or route, and time.
func TestAuditPagingAndFilters(t *testing.T) {
	t.Parallel()
	h := newHarness(t)
	h.seed()
	var entries []AuditEntry
	for i := range 25 {
		e := AuditEntry{Audit: Audit{Actor: bobActor, Address: "127.0.0.9", Route: "POST /v1/admin/workspaces/{ws}/keys", At: t0.Add(time.Duration(i) * time.Minute)}, Action: ActionRequest, Workspace: "acme", Outcome: "forbidden"}
		if i%5 == 0 {
			e.Actor, e.Outcome = annActor, "ok"
		}
		entries = append(entries, e)
	}
	h.must(RecordAudit{Entries: entries[:20]})
	h.must(RecordAudit{Entries: entries[20:]})

	var seqs []uint64
	var before uint64
	for pages := 0; ; pages++ {
		p := h.state().AuditLog(AuditQuery{Workspace: "acme", Before: before, Limit: 10})
		for _, e := range p.Entries {
			seqs = append(seqs, e.Seq)
		}
		if p.Next == 0 {
			if pages != 2 {
				t.Fatalf("%d pages of 10 for 25 entries", pages+1)
			}
			break
		}
		before = p.Next
	}
	if len(seqs) != 25 || !slices.IsSortedFunc(seqs, func(a, b uint64) int { return int(b) - int(a) }) || seqs[0] != 25 || seqs[24] != 1 {
		t.Fatalf("paged seqs %v", seqs)
	}
	if p := h.state().AuditLog(AuditQuery{Workspace: "acme", Actor: "ann"}); len(p.Entries) != 5 {
		t.Fatalf("actor ann: %d entries", len(p.Entries))
	}
	if p := h.state().AuditLog(AuditQuery{Workspace: "acme", Since: t0.Add(20 * time.Minute)}); len(p.Entries) != 5 {
		t.Fatalf("since +20m: %d entries", len(p.Entries))
	}
	if p := h.state().AuditLog(AuditQuery{Workspace: "acme", Action: "POST /v1/admin/workspaces/{ws}/keys"}); len(p.Entries) != 25 {
		t.Fatalf("by route: %d entries", len(p.Entries))
	}
	if p := h.state().AuditLog(AuditQuery{Workspace: "acme", Action: "create_key"}); len(p.Entries) != 0 {
		t.Fatalf("by another action: %d entries", len(p.Entries))
	}
}

// Anonymous attempts have a bound of their own: a flood of them pushes out
// only older anonymous entries, never an operator's; attempts naming a
// workspace that does not exist all land in the cluster's log; PruneAudit
// drops what is older than its time.
func TestAuditBoundsAndRetention(t *testing.T) {
	t.Parallel()
	h := newHarness(t)
	h.seed()
	h.must(audited(annActor, "127.0.0.2", "PATCH /v1/admin/workspaces/{ws}", UpdateWorkspace{ID: "acme", Name: ptr("Acme 2")}))
	anon := func(ws string, i int) AuditEntry {
		return AuditEntry{Audit: Audit{Actor: Actor{Kind: ActorAnonymous, Workspace: ws, Email: "x@acme.test"}, Address: "127.0.0.66", Route: "POST /v1/login", At: t0.Add(time.Hour + time.Duration(i)*time.Millisecond)}, Action: "create_session", Workspace: ws, Outcome: "unauthorized"}
	}
	n := maxAnonymousAuditEntries + 150
	for i := 0; i < n; i += MaxAuditBatch {
		batch := make([]AuditEntry, 0, MaxAuditBatch)
		for j := i; j < min(n, i+MaxAuditBatch); j++ {
			batch = append(batch, anon("acme", j))
		}
		h.must(RecordAudit{Entries: batch})
	}
	p := h.state().AuditLog(AuditQuery{Workspace: "acme", Limit: 1000, Actor: "ann"})
	if len(p.Entries) != 1 || p.Entries[0].Action != "update_workspace" || !slices.Equal(p.Entries[0].Fields, []string{"name"}) {
		t.Fatalf("ann's entry after the flood: %+v", p.Entries)
	}
	if p.Dropped != 150 {
		t.Fatalf("dropped %d, want 150", p.Dropped)
	}
	for i := range 3 {
		h.must(RecordAudit{Entries: []AuditEntry{anon("no-such-ws-"+string(rune('a'+i)), i)}})
	}
	h.state().mu.RLock()
	logs := len(h.state().d.Audit.Logs)
	h.state().mu.RUnlock()
	if logs != 2 {
		t.Fatalf("%d logs, want acme's and the cluster's", logs)
	}
	if p := h.state().AuditLog(AuditQuery{}); len(p.Entries) != 3 || p.Entries[0].Workspace != "no-such-ws-c" {
		t.Fatalf("cluster's log: %+v", p.Entries)
	}

	h.must(PruneAudit{Before: t0.Add(time.Minute)})
	if p := h.state().AuditLog(AuditQuery{All: true, Actor: "ann"}); len(p.Entries) != 0 {
		t.Fatalf("ann's entry (at t0) survived a prune before t0+1m")
	}
	if got := h.state().OldestAudit(); !got.Equal(t0.Add(time.Hour)) { // the cluster log's first
		t.Fatalf("oldest after prune %v", got)
	}
}

// Every node applies the log to the same audit entries, and a snapshot
// carries them whole.
func TestAuditInSnapshots(t *testing.T) {
	t.Parallel()
	h := newHarness(t)
	h.seed()
	h.must(audited(rootActor, "127.0.0.4", "DELETE /v1/admin/workspaces/{ws}", DeleteWorkspace{ID: "acme"}))
	h2 := newHarness(t)
	if err := h2.f.Restore(nopCloser{bytes.NewReader(h.snapshot())}); err != nil {
		t.Fatal(err)
	}
	a, b := h.state().AuditLog(AuditQuery{All: true}), h2.state().AuditLog(AuditQuery{All: true})
	if len(a.Entries) != 1 || a.Entries[0].Workspace != "acme" || len(b.Entries) != 1 || b.Entries[0].Seq != a.Entries[0].Seq || b.Entries[0].Action != "delete_workspace" {
		t.Fatalf("restored audit %+v, want %+v", b.Entries, a.Entries)
	}
	// The deleted workspace keeps its own log.
	if p := h2.state().AuditLog(AuditQuery{Workspace: "acme"}); len(p.Entries) != 1 {
		t.Fatalf("deleted workspace's log: %+v", p.Entries)
	}
	if !bytes.Equal(h.snapshot(), h2.snapshot()) {
		t.Fatal("a restored state snapshots to other bytes")
	}
}

type nopCloser struct{ *bytes.Reader }

func (nopCloser) Close() error { return nil }

// The raw password, session token, API key and identity secret used by
// audited actions appear nowhere: not in the Raft log on disk nor in the
// snapshot, in any spelling, while the audit entries of those actions are
// there.
func TestAuditHoldsNoSecret(t *testing.T) {
	t.Parallel()
	tc := newTestCluster(t, 1, nil)
	c := tc.node("n1")
	ctx := testContext(t)
	mustApply(t, c, CreateWorkspace{ID: "acme", Name: "Acme", Plan: "team", Created: t0})
	call := NewAuditCall(rootActor, "127.0.0.5", "POST /v1/admin/workspaces/{ws}/operators")
	actx := WithAudit(ctx, call)
	const password = "canary-password-7c1e"
	if _, _, err := c.AddOperator(actx, NewOperator{Workspace: "acme", ID: "ann", Email: "ann@acme.test", Name: "Ann", Role: RoleAdmin, Password: password}); err != nil {
		t.Fatal(err)
	}
	signIn := NewAuditCall(Actor{Kind: ActorAnonymous, Workspace: "acme", Email: "ann@acme.test"}, "127.0.0.6", "POST /v1/login")
	tokenRaw, _, err := c.Login(WithAudit(ctx, signIn), "acme", "ann@acme.test", password)
	if err != nil {
		t.Fatal(err)
	}
	keyRaw, _, _, err := c.MintKey(actx, "acme", "", "server")
	if err != nil {
		t.Fatal(err)
	}
	secret := []byte("canary-identity-secret-0f9d")
	if _, err := c.SetIdentitySecret(actx, "acme", secret); err != nil {
		t.Fatal(err)
	}
	newPassword := "canary-password-2-4b8a"
	if _, err := c.SetPassword(actx, "acme", "ann", newPassword); err != nil {
		t.Fatal(err)
	}
	p := c.AuditLog(AuditQuery{Workspace: "acme"})
	var actions []string
	for _, e := range p.Entries {
		actions = append(actions, e.Action+"/"+e.Actor.Kind+"/"+e.Outcome)
	}
	slices.Reverse(actions)
	want := []string{"create_operator/root/ok", "create_session/operator/ok", "create_key/root/ok", "set_secret/root/ok", "update_operator/root/ok"}
	if !slices.Equal(actions, want) {
		t.Fatalf("audit actions %v, want %v", actions, want)
	}
	if e := p.Entries[3]; e.Actor.ID != "ann" || e.Address != "127.0.0.6" {
		// the sign-in, after reverse: index 1 from the oldest = 3 from the newest
		t.Fatalf("sign-in entry %+v", e)
	}
	if err := c.Snapshot(ctx); err != nil {
		t.Fatal(err)
	}
	snap := h0snapshot(t, c)
	tc.stop("n1")
	raftDB, err := os.ReadFile(filepath.Join(tc.dir("n1"), "raft.db"))
	if err != nil {
		t.Fatal(err)
	}
	for _, s := range [][]byte{[]byte(password), []byte(newPassword), []byte(tokenRaw), []byte(keyRaw), secret} {
		for _, spelling := range secretSpellings(s) {
			for name, b := range map[string][]byte{"raft.db": raftDB, "snapshot": snap} {
				if bytes.Contains(b, spelling) {
					t.Errorf("%s holds %q (as %q)", name, s, spelling)
				}
			}
		}
	}
	if !bytes.Contains(snap, []byte(`"route":"POST /v1/login"`)) || !bytes.Contains(raftDB, []byte("127.0.0.6")) {
		t.Fatal("the scan does not see the audit entries it should scan")
	}
}

// secretSpellings is a secret as it could be written: raw, hex, base64 (std
// and URL, padded or not), JSON-escaped.
func secretSpellings(s []byte) [][]byte {
	out := [][]byte{s, []byte(hex.EncodeToString(s))}
	for _, enc := range []*base64.Encoding{base64.StdEncoding, base64.URLEncoding, base64.RawStdEncoding, base64.RawURLEncoding} {
		out = append(out, []byte(strings.TrimRight(enc.EncodeToString(s), "=")))
	}
	return out
}

// h0snapshot is the snapshot the node's FSM would write now.
func h0snapshot(t *testing.T, c *Cluster) []byte { return snapshotBytes(t, c.fsm) }

// A faulty audit context never fails the action: the command applies,
// unaudited (and the node logs the bug).
func TestBadAuditContextDoesNotFailTheAction(t *testing.T) {
	t.Parallel()
	tc := newTestCluster(t, 1, nil)
	c := tc.node("n1")
	ctx := WithAudit(testContext(t), NewAuditCall(rootActor, "not an address", "PUT /v1/admin/plans/{name}"))
	if _, err := c.Apply(ctx, SetPlan{Plan: Plan{Name: "gold", Seats: 1}}); err != nil {
		t.Fatalf("apply with a bad audit context: %v", err)
	}
	if _, err := c.Plan("gold"); err != nil {
		t.Fatal(err)
	}
	if p := c.AuditLog(AuditQuery{All: true}); len(p.Entries) != 0 {
		t.Fatalf("entries %+v", p.Entries)
	}
	// And an invalid command is still refused as such.
	if _, err := c.Apply(ctx, SetPlan{Plan: Plan{Name: "Gold!"}}); !errors.Is(err, ErrInvalid) {
		t.Fatalf("invalid command: %v", err)
	}
}

// BenchmarkAuditedApply: what the audit adds to an apply in the state
// machine (decode and apply of a SetPlan bare, and in an Audited envelope
// with its workspace's log full, so that each entry drops the oldest).
func BenchmarkAuditedApply(b *testing.B) {
	for _, wrap := range []bool{false, true} {
		name := map[bool]string{false: "bare", true: "audited-full-log"}[wrap]
		b.Run(name, func(b *testing.B) {
			h := newHarness(b)
			h.seed()
			var cmd Command = UpdateWorkspace{ID: "acme", Name: ptr("Acme")}
			if wrap {
				fill := make([]AuditEntry, MaxAuditBatch)
				for i := range fill {
					fill[i] = AuditEntry{Audit: Audit{Actor: annActor, Address: "127.0.0.2", Route: "PATCH /v1/admin/workspaces/{ws}", At: t0}, Action: "update_workspace", Workspace: "acme", Outcome: "ok"}
				}
				for range maxAuditEntries / MaxAuditBatch {
					h.must(RecordAudit{Entries: fill})
				}
				cmd = audited(annActor, "127.0.0.2", "PATCH /v1/admin/workspaces/{ws}", cmd)
			}
			data, err := EncodeCommand(cmd)
			if err != nil {
				b.Fatal(err)
			}
			b.ReportAllocs()
			for b.Loop() {
				if _, err := h.applyRaw(data); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}

// BenchmarkAuditLogPage: a page of 100 from a full workspace log, and the
// snapshot's size with it.
func BenchmarkAuditLogPage(b *testing.B) {
	h := newHarness(b)
	h.seed()
	base := len(h.snapshot())
	keyHash := HashToken(APIKeyPrefix + "k")
	fill := make([]AuditEntry, MaxAuditBatch)
	for i := range fill {
		fill[i] = AuditEntry{Audit: Audit{Actor: annActor, Address: "203.0.113.77", Route: "POST /v1/admin/workspaces/{ws}/keys", At: t0.Add(time.Duration(i) * time.Second)}, Action: "create_key", Workspace: "acme", Target: KeyID(keyHash), Outcome: "ok"}
	}
	for range maxAuditEntries / MaxAuditBatch {
		h.must(RecordAudit{Entries: fill})
	}
	perEntry := float64(len(h.snapshot())-base) / maxAuditEntries
	b.ReportAllocs()
	for b.Loop() {
		if p := h.state().AuditLog(AuditQuery{Workspace: "acme", Before: 5000}); len(p.Entries) != 100 {
			b.Fatal(len(p.Entries))
		}
	}
	b.ReportMetric(perEntry, "snapshot-bytes/entry")
}
