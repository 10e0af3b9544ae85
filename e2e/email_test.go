package e2e

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"io/fs"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"parley/cluster/membership"
	"parley/internal/eventually"
	"parley/internal/gotool"
)

// mailpitVersion is the SMTP server the e-mail tests send to; `make
// test` builds it into ~/.cache/parley/tools/mailpit-VERSION (the
// Makefile's MAILPIT) and passes it as $PARLEY_MAILPIT.
const mailpitVersion = "v1.33.1"

// mailpitBinary finds mailpit: $PARLEY_MAILPIT, else the Makefile's
// cache, else it is built there now from the module proxy.
func mailpitBinary(t testing.TB) string {
	t.Helper()
	dir, err := gotool.CacheDir("tools", "mailpit-"+mailpitVersion)
	if err != nil {
		t.Fatal(err)
	}
	bin, err := gotool.Binary("PARLEY_MAILPIT", dir, "mailpit", "github.com/axllent/mailpit@"+mailpitVersion, t.Logf)
	if err != nil {
		t.Fatal(err)
	}
	return bin
}

// mailpit is a running mailpit: SMTP on smtp, its HTTP API on api.
type mailpit struct {
	smtp, api string
	cmd       *exec.Cmd
}

// startMailpit runs mailpit on loopback ports of its own, with SMTP
// authentication by user parley and password, over plain SMTP, and its
// chaos triggers enabled.
func startMailpit(t testing.TB, password string) *mailpit {
	t.Helper()
	dir := t.TempDir()
	auth := filepath.Join(dir, "smtp-auth")
	if err := os.WriteFile(auth, []byte("parley:"+password+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	m := &mailpit{smtp: freeAddr(t), api: freeAddr(t)}
	m.cmd = exec.Command(mailpitBinary(t), "--smtp", m.smtp, "--listen", m.api, "--database", filepath.Join(dir, "mailpit.db"),
		"--smtp-auth-file", auth, "--smtp-auth-allow-insecure", "--enable-chaos", "--smtp-disable-rdns")
	logf, err := os.Create(filepath.Join(dir, "mailpit.log"))
	if err != nil {
		t.Fatal(err)
	}
	m.cmd.Stdout, m.cmd.Stderr = logf, logf
	if err := m.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		m.cmd.Process.Signal(syscall.SIGKILL)
		m.cmd.Wait()
		logf.Close()
	})
	eventually.Holds(t, 20*time.Second, "mailpit answers", func() error {
		_, err := m.messages()
		return err
	})
	return m
}

func (m *mailpit) call(method, path string, body any, out any) error {
	var rd io.Reader
	if body != nil {
		b, _ := json.Marshal(body)
		rd = bytes.NewReader(b)
	}
	req, err := http.NewRequest(method, "http://"+m.api+path, rd)
	if err != nil {
		return err
	}
	req.Header.Set("Content-Type", "application/json")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	if resp.StatusCode != 200 {
		return fmt.Errorf("mailpit %s %s: %d %s", method, path, resp.StatusCode, b)
	}
	if out != nil {
		return json.Unmarshal(b, out)
	}
	return nil
}

// mailMsg is a message as mailpit's API shows it.
type mailMsg struct {
	ID        string
	MessageID string
	Subject   string
	To        []struct{ Address string }
	Text      string
}

// messages lists every message mailpit holds, each read in full, oldest
// first.
func (m *mailpit) messages() ([]mailMsg, error) {
	var list struct{ Messages []mailMsg }
	if err := m.call("GET", "/api/v1/messages?limit=500", nil, &list); err != nil {
		return nil, err
	}
	out := make([]mailMsg, 0, len(list.Messages))
	for i := len(list.Messages) - 1; i >= 0; i-- {
		var full mailMsg
		if err := m.call("GET", "/api/v1/message/"+list.Messages[i].ID, nil, &full); err != nil {
			return nil, err
		}
		out = append(out, full)
	}
	return out, nil
}

// matching are the messages whose text holds every one of words.
func matching(msgs []mailMsg, words ...string) []mailMsg {
	var out []mailMsg
	for _, m := range msgs {
		ok := true
		for _, w := range words {
			ok = ok && strings.Contains(m.Text, w)
		}
		if ok {
			out = append(out, m)
		}
	}
	return out
}

// chaos sets mailpit's SMTP failure triggers: code on every RCPT; 0 clears.
func (m *mailpit) chaos(t testing.TB, code int) {
	t.Helper()
	body := map[string]any{}
	if code != 0 {
		body["Recipient"] = map[string]any{"ErrorCode": code, "Probability": 100}
	}
	if err := m.call("PUT", "/api/v1/chaos", body, nil); err != nil {
		t.Fatal(err)
	}
}

// emailPassword is the SMTP password of the tests' mailpit.
const emailPassword = "smtp-secret-e2e-7f3a"

// emailRig starts n nodes mailing through a mailpit, with workspace acme
// set to send through it, an agent (ann) connected, and a visitor who
// left an address, still connected.
func emailRig(t *testing.T, ctx context.Context, n int, batch string) (tc *testCluster, mp *mailpit, agent, vis *wsClient, conv string) {
	t.Helper()
	password := emailPassword
	mp = startMailpit(t, password)
	tc = startCluster(t, n, "-email-allow-plaintext", "-email-batch", batch, "-email-backoff-max", "500ms")
	tc.createWorkspace(t, map[string]any{"id": "acme", "name": "Acme", "plan": "team"})
	host, port, _ := strings.Cut(mp.smtp, ":")
	var set map[string]any
	mustAPI(t, tc.nodes[0], "PUT", "/v1/admin/workspaces/acme/email", tc.root, map[string]any{
		"host": host, "port": atoi(port), "tls": "none", "user": "parley", "password": password,
		"from": "support@acme.test", "site_url": "https://shop.acme.test/help"}, &set)
	if set["password_set"] != true || strings.Contains(fmt.Sprint(set), password) {
		t.Fatalf("PUT answered %v", set)
	}
	// No route of any node returns the secret; every node has the settings.
	for _, nd := range tc.nodes {
		eventually.Holds(t, 10*time.Second, "every node has the settings", func() error {
			resp, b, err := request(ctx, nd, "GET", "/v1/admin/workspaces/acme/email", tc.root, nil)
			if err != nil || resp.StatusCode != 200 {
				return fmt.Errorf("%s: %v %s", nd.ID, err, b)
			}
			if body := string(b); strings.Contains(body, password) || !strings.Contains(body, `"password_set":true`) {
				t.Fatalf("%s GET shows %s", nd.ID, b)
			}
			return nil
		})
	}
	agent = tc.agentOn(t, ctx, tc.nodes[0], tc.nodes[n-1], "acme", "ann")
	var welcome map[string]any
	vis, welcome, conv = startVisitor(t, ctx, tc.nodes[0], "acme")
	say(t, ctx, vis, conv, "v-hello-01", "hello, is anyone there?")
	// A bad address is refused with bad_email; a good one taken.
	vis.send(ctx, map[string]any{"type": "send", "ref": "bad", "conversation": conv, "id": "email-bad-0001", "body": "not an address"})
	if f, err := vis.awaitRef(ctx, "bad"); err != nil || f["type"] != "error" || f["code"] != "bad_email" {
		t.Fatalf("a bad address: %v %v", f, err)
	}
	say(t, ctx, vis, conv, "email-good-001", "visitor@example.com")
	// The address is in the visitor's export.
	eventually.Holds(t, 10*time.Second, "the address in the visitor's export", func() error {
		resp, b, err := request(ctx, tc.nodes[1], "GET", "/v1/admin/workspaces/acme/export?visitor_id="+welcome["visitor_id"].(string), tc.root, nil)
		if err != nil || resp.StatusCode != 200 || !strings.Contains(string(b), `"visitor@example.com"`) {
			return fmt.Errorf("export: %v %s", err, b)
		}
		return nil
	})
	return tc, mp, agent, vis, conv
}

func atoi(s string) int {
	n := 0
	fmt.Sscan(s, &n)
	return n
}

// mailState is GET .../email/deliveries/{conv}.
func mailState(t testing.TB, nd *nodeProc, root, conv string) map[string]any {
	var st map[string]any
	if code, body := api(nd, "GET", "/v1/admin/workspaces/acme/email/deliveries/"+conv, root, nil, &st); code != 200 {
		t.Fatalf("mail state: %d %s", code, body)
	}
	return st
}

// metricSum sums a node's samples of a metric whose line starts with
// prefix.
func metricSum(nd *nodeProc, prefix string) float64 {
	resp, err := http.Get(nd.URL + "/metrics")
	if err != nil {
		return -1
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	sum := 0.0
	for _, l := range strings.Split(string(b), "\n") {
		if strings.HasPrefix(l, prefix) {
			f := strings.Fields(l)
			var v float64
			fmt.Sscan(f[len(f)-1], &v)
			sum += v
		}
	}
	return sum
}

// TestEmailThroughMailpit: a workspace's SMTP settings (the password never
// shown again, nor found in any node's files), a visitor who left an
// address and went: an agent's two replies arrive in mailpit in one mail
// with the link back; a temporary SMTP error (mailpit's chaos, 451) is
// retried to success and was visible meanwhile; a permanent one (550) is
// not retried and stays visible to agents; a transcript asked for arrives.
func TestEmailThroughMailpit(t *testing.T) {
	ctx := testCtx(t, 2*time.Minute)
	tc, mp, agent, vis, conv := emailRig(t, ctx, 3, "2s")
	nd := tc.nodes[1]

	// The transcript, asked for while the visitor is there: one mail with
	// the conversation's messages; a second request at once is not
	// answered (one every 10 minutes).
	say(t, ctx, agent, conv, "a-hello-0001", "Hi, Ann here")
	say(t, ctx, vis, conv, "transcript-0001", "Please e-mail me the transcript")
	eventually.Holds(t, 30*time.Second, "the transcript", func() error {
		msgs, err := mp.messages()
		if err != nil {
			return err
		}
		if n := len(matching(msgs, "hello, is anyone there?", "Hi, Ann here")); n != 1 {
			return fmt.Errorf("%d transcripts among %d mails", n, len(msgs))
		}
		return nil
	})
	say(t, ctx, vis, conv, "transcript-0002", "Please e-mail me the transcript")
	eventually.Holds(t, 10*time.Second, "the second request refused", func() error {
		if st := mailState(t, nd, tc.root, conv); st["kind"] != "transcript" || !strings.Contains(fmt.Sprint(st["error"]), "rate limited") {
			return fmt.Errorf("state %v", st)
		}
		return nil
	})
	if msgs, _ := mp.messages(); len(msgs) != 1 {
		t.Fatalf("%d mails after the second transcript request, want 1", len(msgs))
	}
	// The visitor leaves: replies are mailed from now on.
	vis.close()

	say(t, ctx, agent, conv, "a-reply-0001", "first reply from Ann")
	say(t, ctx, agent, conv, "a-reply-0002", "second reply from Ann")
	var got []mailMsg
	eventually.Holds(t, 30*time.Second, "the batched reply mail", func() error {
		msgs, err := mp.messages()
		if err != nil {
			return err
		}
		if got = matching(msgs, "first reply from Ann"); len(got) == 0 {
			return fmt.Errorf("%d mails, none with the first reply", len(msgs))
		}
		return nil
	})
	m := got[0]
	if len(got) != 1 || !strings.Contains(m.Text, "second reply from Ann") || len(m.To) != 1 || m.To[0].Address != "visitor@example.com" {
		t.Fatalf("want one mail to the visitor with both replies, got %d: %+v", len(got), got)
	}
	if link := "https://shop.acme.test/help#parley-open=" + conv; !strings.Contains(m.Text, link) {
		t.Fatalf("the mail has no link %s:\n%s", link, m.Text)
	}
	if strings.Contains(m.Text, "hello, is anyone there?") || strings.Contains(m.Text, "visitor@example.com") {
		t.Fatalf("the reply mail holds the visitor's own messages:\n%s", m.Text)
	}
	eventually.Holds(t, 10*time.Second, "the mail recorded sent", func() error {
		if st := mailState(t, nd, tc.root, conv); st["status"] != "sent" {
			return fmt.Errorf("state %v", st)
		}
		return nil
	})

	// A temporary error: retried, visible while it lasts, then sent.
	mp.chaos(t, 451)
	say(t, ctx, agent, conv, "a-reply-0003", "third reply, after a hiccup")
	eventually.Holds(t, 30*time.Second, "the temporary error visible", func() error {
		st := mailState(t, nd, tc.root, conv)
		if st["status"] != "retrying" || !strings.Contains(fmt.Sprint(st["error"]), "451") {
			return fmt.Errorf("state %v", st)
		}
		return nil
	})
	mp.chaos(t, 0)
	eventually.Holds(t, 30*time.Second, "the third reply mailed after the retry", func() error {
		msgs, err := mp.messages()
		if err != nil {
			return err
		}
		if n := len(matching(msgs, "third reply, after a hiccup")); n != 1 {
			return fmt.Errorf("%d mails with the third reply", n)
		}
		return nil
	})

	// A permanent error: not retried, visible to agents.
	mp.chaos(t, 550)
	say(t, ctx, agent, conv, "a-reply-0004", "fourth reply, refused")
	eventually.Holds(t, 30*time.Second, "the permanent error visible", func() error {
		st := mailState(t, nd, tc.root, conv)
		if st["status"] != "failed" || !strings.Contains(fmt.Sprint(st["error"]), "550") {
			return fmt.Errorf("state %v", st)
		}
		return nil
	})
	var failed []map[string]any
	mustAPI(t, nd, "GET", "/v1/admin/workspaces/acme/email/deliveries?status=failed", tc.root, nil, &failed)
	if len(failed) != 1 || failed[0]["conversation"] != conv {
		t.Fatalf("failed deliveries: %v", failed)
	}
	var temp, perm float64
	for _, n := range tc.nodes {
		temp += metricSum(n, `parley_email_failed_total{class="temporary",kind="replies"}`)
		perm += metricSum(n, `parley_email_failed_total{class="permanent",kind="replies"}`)
	}
	if temp < 1 || perm != 1 {
		t.Fatalf("failed mails counted: %v temporary, %v permanent", temp, perm)
	}
	mp.chaos(t, 0)
	msgs, _ := mp.messages()
	if n := len(matching(msgs, "fourth reply, refused")); n != 0 {
		t.Fatalf("the refused reply was mailed after all (%d)", n)
	}
	noSecretOnDisk(t, tc, emailPassword)
}

// TestEmailSenderKilledMidBatch: the node that sends a conversation's mail
// is killed with SIGKILL while the batch window of two replies is open;
// another replica takes the conversation over and the two replies arrive
// in one mail, once.
func TestEmailSenderKilledMidBatch(t *testing.T) {
	ctx := testCtx(t, 2*time.Minute)
	tc, mp, _, vis, conv := emailRig(t, ctx, 3, "6s")
	vis.close()
	var members []membership.Member
	for _, n := range tc.nodes {
		members = append(members, membership.Member{ID: n.ID})
	}
	sender := membership.Replicas(members, conv, "", 3)[0].ID
	var victim *nodeProc
	var alive []*nodeProc
	for _, n := range tc.nodes {
		if n.ID == sender {
			victim = n
		} else {
			alive = append(alive, n)
		}
	}
	agent := tc.agentOn(t, ctx, alive[0], alive[0], "acme", "bob")
	say(t, ctx, agent, conv, "b-reply-0001", "first reply from Bob")
	say(t, ctx, agent, conv, "b-reply-0002", "second reply from Bob")
	victim.Kill9(t)
	t.Logf("killed %s, the conversation's sender, inside the batch window", victim.ID)
	eventually.Holds(t, 60*time.Second, "the mail sent by another replica", func() error {
		msgs, err := mp.messages()
		if err != nil {
			return err
		}
		if n := len(matching(msgs, "first reply from Bob", "second reply from Bob")); n == 0 {
			return fmt.Errorf("%d mails, none with both replies", len(msgs))
		}
		return nil
	})
	// Once: a look a little later finds still one.
	time.Sleep(3 * time.Second)
	msgs, err := mp.messages()
	if err != nil {
		t.Fatal(err)
	}
	if n := len(matching(msgs, "Bob")); n != 1 {
		t.Fatalf("%d mails with Bob's replies, want 1", n)
	}
}

// noSecretOnDisk fails if any file under a node's data directory holds
// secret.
func noSecretOnDisk(t testing.TB, tc *testCluster, secret string) {
	t.Helper()
	for _, nd := range tc.nodes {
		filepath.WalkDir(nd.DataDir, func(p string, d fs.DirEntry, err error) error {
			if err != nil || d.IsDir() {
				return nil
			}
			b, _ := os.ReadFile(p)
			if bytes.Contains(b, []byte(secret)) {
				t.Errorf("%s holds the SMTP secret in plaintext", p)
			}
			return nil
		})
		if b, _ := os.ReadFile(nd.LogPath); bytes.Contains(b, []byte(secret)) {
			t.Errorf("%s's log holds the SMTP secret", nd.ID)
		}
	}
}
