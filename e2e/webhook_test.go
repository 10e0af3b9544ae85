package e2e

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"parley/internal/eventually"
)

// The receiver of TestWebhooksSurviveReceiverAndSenderFailures: a separate
// Python process that verifies every delivery with docs/api.md's Python
// verifier (inserted above it), records it with its verdict, and answers
// slowly, so that deliveries are under way when a node is killed.
const receiverPy = `
import base64, http.server, json, sys, time

secret, port, path, delay = sys.argv[1].encode(), int(sys.argv[2]), sys.argv[3], float(sys.argv[4])
out = open(path, "a")

class H(http.server.BaseHTTPRequestHandler):
    def do_POST(self):
        body = self.rfile.read(int(self.headers["Content-Length"]))
        now = time.time()
        sig = self.headers.get("Parley-Signature", "")
        ok = verify(secret, sig, body, now)
        time.sleep(delay)
        out.write(json.dumps({"event_id": self.headers.get("Parley-Event-Id", ""), "sig": sig, "now": now,
                              "body": base64.b64encode(body).decode(), "ok": ok}) + "\n")
        out.flush()
        self.send_response(200 if ok else 400)
        self.send_header("Content-Length", "0")
        self.end_headers()

    def log_message(self, *a):
        pass

http.server.ThreadingHTTPServer.allow_reuse_address = True
http.server.ThreadingHTTPServer(("127.0.0.1", port), H).serve_forever()
`

// docCode is the first fenced block of lang after the verification
// recipe's heading in docs/api.md.
func docCode(t testing.TB, lang string) string {
	t.Helper()
	b, err := os.ReadFile("../docs/api.md")
	if err != nil {
		t.Fatal(err)
	}
	doc := string(b)
	i := strings.Index(doc, "#### Verifying a delivery")
	if i < 0 {
		t.Fatal("docs/api.md has no verification recipe")
	}
	m := regexp.MustCompile("(?s)```" + lang + "\n(.*?)```").FindStringSubmatch(doc[i:])
	if m == nil {
		t.Fatalf("docs/api.md: no %s block in the verification recipe", lang)
	}
	return m[1]
}

// createdWebhook is the answer to an endpoint's creation.
type createdWebhook struct {
	Webhook struct{ ID string } `json:"webhook"`
	Secret  string              `json:"secret"`
}

// webhookRig starts n nodes (allowed to reach loopback, with flags) and
// workspace acme with an endpoint for events at a free port, known to
// every node, and returns the receiver for that port, not started.
func webhookRig(t *testing.T, n int, events []string, flags ...string) (*testCluster, createdWebhook, *receiverProc) {
	t.Helper()
	dir := t.TempDir()
	port := strings.TrimPrefix(freeAddr(t), "127.0.0.1:")
	tc := startCluster(t, n, append([]string{"-webhook-allow-private"}, flags...)...)
	tc.createWorkspace(t, map[string]any{"id": "acme", "name": "Acme", "plan": "team"})
	var made createdWebhook
	mustAPI(t, tc.nodes[0], "POST", "/v1/admin/workspaces/acme/webhooks", tc.root,
		map[string]any{"url": "http://127.0.0.1:" + port + "/hook", "events": events}, &made)
	for _, nd := range tc.nodes {
		eventually.Holds(t, 10*time.Second, "every node knows the endpoint", func() error {
			if st, _ := api(nd, "GET", "/v1/admin/workspaces/acme/webhooks/"+made.Webhook.ID, tc.root, nil, nil); st != 200 {
				return fmt.Errorf("%s: %d", nd.ID, st)
			}
			return nil
		})
	}
	script := filepath.Join(dir, "receiver.py")
	if err := os.WriteFile(script, []byte(docCode(t, "python")+receiverPy), 0o644); err != nil {
		t.Fatal(err)
	}
	return tc, made, &receiverProc{script: script, port: port, out: filepath.Join(dir, "deliveries.jsonl"), secr: made.Secret}
}

// delivery is one POST the receiver recorded.
type delivery struct {
	EventID string  `json:"event_id"`
	Sig     string  `json:"sig"`
	Now     float64 `json:"now"`
	Body    []byte  `json:"body"`
	OK      bool    `json:"ok"`
}

type payload struct {
	Version      int    `json:"version"`
	ID           string `json:"id"`
	Type         string `json:"type"`
	Conversation string `json:"conversation"`
	Data         struct {
		Message *struct {
			ID   string `json:"id"`
			Body string `json:"body"`
		} `json:"message"`
		Assignment *struct {
			Operator string `json:"operator"`
			Version  int    `json:"version"`
		} `json:"assignment"`
		Visitor *struct {
			ID string `json:"id"`
		} `json:"visitor"`
	} `json:"data"`
}

// key names the event a payload carries, the same in every copy.
func (p payload) key() string {
	k := p.Type + " " + p.Conversation
	if m := p.Data.Message; m != nil {
		k += " " + m.ID
	}
	if a := p.Data.Assignment; a != nil {
		k += fmt.Sprintf(" %s %d", a.Operator, a.Version)
	}
	if v := p.Data.Visitor; v != nil {
		k += " " + v.ID
	}
	return k
}

func readDeliveries(t testing.TB, path string) []delivery {
	t.Helper()
	f, err := os.Open(path)
	if os.IsNotExist(err) {
		return nil
	}
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	var out []delivery
	sc := bufio.NewScanner(f)
	sc.Buffer(make([]byte, 1<<20), 1<<20)
	for sc.Scan() {
		var d delivery
		if json.Unmarshal(sc.Bytes(), &d) == nil {
			out = append(out, d)
		}
	}
	return out
}

// receiverProc runs the receiver on a fixed port.
type receiverProc struct {
	cmd                     *exec.Cmd
	script, port, out, secr string
}

func (r *receiverProc) start(t testing.TB) {
	t.Helper()
	r.cmd = exec.Command("python3", r.script, r.secr, r.port, r.out, "0.05")
	r.cmd.Stderr = os.Stderr
	if err := r.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	eventually.Holds(t, 10*time.Second, "the receiver listens", func() error {
		resp, err := http.Get("http://127.0.0.1:" + r.port + "/")
		if err != nil {
			return err
		}
		resp.Body.Close()
		return nil
	})
}

func (r *receiverProc) kill() {
	if r.cmd != nil && r.cmd.Process != nil {
		r.cmd.Process.Signal(syscall.SIGKILL)
		r.cmd.Wait()
	}
}

// webhookDelivered is a node's parley_webhook_delivered_total, summed.
func webhookDelivered(nd *nodeProc) float64 { return metricSum(nd, "parley_webhook_delivered_total{") }

// TestWebhooksSurviveReceiverAndSenderFailures: a 3-node cluster sends a
// workspace's events to a receiver in a separate process that verifies
// every signature. The receiver is killed for a while and comes back; the
// node that has sent the most is killed with SIGKILL while deliveries are
// under way. In the end every conversation's creation and every
// acknowledged message arrived, verified (by the Python verifier of
// docs/api.md as they came, and by its Go and Node verifiers after), in
// order per conversation and origin; every duplicate carried the same
// event ID.
func TestWebhooksSurviveReceiverAndSenderFailures(t *testing.T) {
	tc, made, rcv := webhookRig(t, 3, []string{"conversation.created", "message.created", "conversation.assigned", "visitor.erased"},
		"-webhook-backoff-max", "300ms", "-webhook-timeout", "3s")
	dir := filepath.Dir(rcv.out)
	rcv.start(t)
	defer rcv.kill()

	ctx := testCtx(t, 8*time.Minute)
	const convs = 4
	writers := make([]*visitorWriter, convs)
	for i := range writers {
		writers[i] = newVisitorWriter(t, ctx, "acme", fmt.Sprintf("hello from conversation %d", i))
	}
	// via records which node each message went through: one origin.
	var prefixes []string
	write := func(phase string, nodes []*nodeProc, n int) {
		for i, w := range writers {
			p := fmt.Sprintf("%s%d", phase, i)
			prefixes = append(prefixes, p)
			w.write(nodes[i%len(nodes)], p, n)
		}
	}
	write("a", tc.nodes, 8)
	eventually.Holds(t, 60*time.Second, "the first deliveries", func() error {
		if n := len(readDeliveries(t, rcv.out)); n < 10 {
			return fmt.Errorf("%d deliveries", n)
		}
		return nil
	})

	// The receiver is down while more is written, then back.
	rcv.kill()
	write("b", tc.nodes, 8)
	time.Sleep(2 * time.Second) // down for a while: a few attempts fail
	before := len(readDeliveries(t, rcv.out))
	rcv.start(t)
	eventually.Holds(t, 60*time.Second, "deliveries again", func() error {
		if n := len(readDeliveries(t, rcv.out)); n <= before {
			return fmt.Errorf("%d deliveries", n)
		}
		return nil
	})
	// The node that sent the most is killed while deliveries are under
	// way; the others write on and take its conversations over.
	victim := tc.nodes[0]
	for _, nd := range tc.nodes {
		if webhookDelivered(nd) > webhookDelivered(victim) {
			victim = nd
		}
	}
	victim.Kill9(t)
	t.Logf("killed %s with %d deliveries recorded so far", victim.ID, len(readDeliveries(t, rcv.out)))
	var alive []*nodeProc
	for _, nd := range tc.nodes {
		if nd != victim {
			alive = append(alive, nd)
		}
	}
	write("c", alive, 6)
	// The control plane's events: an assignment, then (once the
	// conversations' events are in) an erasure.
	mustAPI(t, alive[0], "POST", "/v1/admin/workspaces/acme/operators", tc.root,
		map[string]any{"id": "bob", "email": "bob@acme.test", "name": "Bob", "password": "a good long password"}, nil)
	mustAPI(t, alive[0], "PUT", "/v1/admin/workspaces/acme/assignments/"+writers[1].conv, tc.root, map[string]any{"operator": "bob", "expect_version": 0}, nil)

	// Every event arrives: each conversation's creation and each acked
	// message.
	want := map[string]bool{"conversation.assigned " + writers[1].conv + " bob 1": true}
	for _, w := range writers {
		want["conversation.created "+w.conv] = true
		for id := range w.acked {
			want["message.created "+w.conv+" "+id] = true
		}
	}
	var ds []delivery
	allDelivered := func() error {
		ds = readDeliveries(t, rcv.out)
		got := map[string]bool{}
		for _, d := range ds {
			var p payload
			if d.OK && json.Unmarshal(d.Body, &p) == nil {
				got[p.key()] = true
			}
		}
		var missing []string
		for k := range want {
			if !got[k] {
				missing = append(missing, k)
			}
		}
		if len(missing) > 0 {
			slices.Sort(missing)
			return fmt.Errorf("%d of %d events missing, e.g. %q", len(missing), len(want), missing[:min(3, len(missing))])
		}
		return nil
	}
	eventually.Holds(t, 3*time.Minute, "every event delivered", allDelivered)
	mustAPI(t, alive[0], "POST", "/v1/admin/workspaces/acme/erasures", tc.root, map[string]any{"visitor_id": writers[0].vis["visitor_id"]}, nil)
	want[fmt.Sprintf("visitor.erased  v:%s", writers[0].vis["visitor_id"])] = true
	eventually.Holds(t, time.Minute, "the erasure delivered", allDelivered)

	// Every delivery verified; a duplicate has the same event ID; first
	// arrivals in order per conversation and origin.
	idOf := map[string]string{} // event -> its ID
	dups := 0
	var order []string
	seen := map[string]bool{}
	for _, d := range ds {
		if !d.OK {
			t.Errorf("a delivery failed the Python verifier: %s", d.Sig)
		}
		var p payload
		if err := json.Unmarshal(d.Body, &p); err != nil || p.Version != 1 || p.ID != d.EventID {
			t.Fatalf("payload %s (event id header %s): %v", d.Body, d.EventID, err)
		}
		k := p.key()
		if id, ok := idOf[k]; ok && id != p.ID {
			t.Errorf("%s came as %s and as %s", k, id, p.ID)
		}
		idOf[k] = p.ID
		if seen[p.ID] {
			dups++
			continue
		}
		seen[p.ID] = true
		order = append(order, k)
	}
	for _, w := range writers {
		at := slices.Index(order, "conversation.created "+w.conv)
		for _, k := range order[:max(at, 0)] {
			if strings.HasPrefix(k, "message.created "+w.conv+" ") {
				t.Errorf("%s arrived before its conversation.created", k)
			}
		}
	}
	for _, p := range prefixes {
		var ids []string
		for _, k := range order {
			if f := strings.Fields(k); len(f) == 3 && strings.HasPrefix(f[2], p+"-") {
				ids = append(ids, f[2])
			}
		}
		if !slices.IsSorted(ids) {
			t.Errorf("messages of %s arrived out of order: %v", p, ids)
		}
	}
	t.Logf("%d deliveries of %d events, %d duplicates (same event ID)", len(ds), len(seen), dups)
	sent := 0.0
	for _, nd := range alive {
		sent += webhookDelivered(nd)
	}
	if sent <= 0 {
		t.Errorf("the surviving nodes count %v deliveries in parley_webhook_delivered_total", sent)
	}

	// docs/api.md's Go and Node verifiers accept every delivery the
	// sender made, and refuse one tampered with.
	records := filepath.Join(dir, "records.jsonl")
	f, err := os.Create(records)
	if err != nil {
		t.Fatal(err)
	}
	enc := json.NewEncoder(f)
	for _, d := range ds {
		enc.Encode(map[string]any{"sig": d.Sig, "body": d.Body, "now": d.Now, "want": true})
	}
	bad := ds[0]
	enc.Encode(map[string]any{"sig": bad.Sig, "body": append(slices.Clone(bad.Body), ' '), "now": bad.Now, "want": false})
	enc.Encode(map[string]any{"sig": bad.Sig, "body": bad.Body, "now": bad.Now + 301, "want": false})
	f.Close()
	runVerifiers(t, dir, made.Secret, records, len(ds)+2)
}

const verifyMainGo = `
func main() {
	f, err := os.Open(os.Args[2])
	if err != nil {
		panic(err)
	}
	sc := bufio.NewScanner(f)
	sc.Buffer(make([]byte, 1<<20), 1<<20)
	n := 0
	for sc.Scan() {
		var r struct {
			Sig  string
			Body []byte
			Now  float64
			Want bool
		}
		if err := json.Unmarshal(sc.Bytes(), &r); err != nil {
			panic(err)
		}
		now := time.Unix(0, int64(r.Now*1e9))
		if verify([]byte(os.Args[1]), r.Sig, r.Body, now) != r.Want {
			fmt.Printf("record %d: verify gave %v\n", n, !r.Want)
			os.Exit(1)
		}
		n++
	}
	fmt.Println(n)
}
`

const verifyMainJS = `
const fs = require("node:fs");
let n = 0;
for (const line of fs.readFileSync(process.argv[3], "utf8").split("\n")) {
  if (!line) continue;
  const r = JSON.parse(line);
  if (verify(process.argv[2], r.sig, Buffer.from(r.body, "base64"), r.now) !== r.want) {
    console.log("record " + n + ": verify gave " + !r.want);
    process.exit(1);
  }
  n++;
}
console.log(n);
`

// runVerifiers runs docs/api.md's Go and Node verifiers over records.
func runVerifiers(t *testing.T, dir, secret, records string, n int) {
	goCode := docCode(t, "go")
	// The doc's block starts with its imports; the program adds its own.
	goCode = strings.Replace(goCode, "import (\n", "import (\n\t\"bufio\"\n\t\"encoding/json\"\n\t\"fmt\"\n\t\"os\"\n", 1)
	goDir := filepath.Join(dir, "verifygo")
	os.MkdirAll(goDir, 0o755)
	os.WriteFile(filepath.Join(goDir, "main.go"), []byte("package main\n\n"+goCode+verifyMainGo), 0o644)
	os.WriteFile(filepath.Join(goDir, "go.mod"), []byte("module verify\n\ngo 1.22\n"), 0o644)
	jsFile := filepath.Join(dir, "verify.js")
	os.WriteFile(jsFile, []byte(docCode(t, "js")+verifyMainJS), 0o644)
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	var wg sync.WaitGroup
	for _, c := range []*exec.Cmd{
		exec.CommandContext(ctx, "go", "run", ".", secret, records),
		exec.CommandContext(ctx, "node", jsFile, secret, records),
	} {
		if c.Args[0] == "go" {
			c.Dir = goDir
			c.Env = append(os.Environ(), "GOFLAGS=-mod=mod", "GOWORK=off")
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			out, err := c.CombinedOutput()
			if err != nil || strings.TrimSpace(string(out)) != strconv.Itoa(n) {
				t.Errorf("%s verifier: %v: %s", c.Args[0], err, out)
			}
		}()
	}
	wg.Wait()
}

// TestWebhookDeadLettersRedeliver: with the retry period shortened
// (-webhook-retry-for), events the receiver refused become dead letters
// in the control plane, listed by every node, without their content; once
// the receiver is back, a redelivery sends each and empties the list.
func TestWebhookDeadLettersRedeliver(t *testing.T) {
	tc, made, rcv := webhookRig(t, 2, []string{"message.created"}, "-webhook-retry-for", "2s", "-webhook-backoff-max", "200ms")
	w := newVisitorWriter(t, testCtx(t, 2*time.Minute), "acme", "a secret the dead letter must not hold")
	w.write(tc.nodes[1], "d", 3)
	path := "/v1/admin/workspaces/acme/webhooks/" + made.Webhook.ID + "/dead-letters"
	var dead struct {
		Dead []struct {
			EventID   string `json:"event_id"`
			Type      string `json:"type"`
			Redeliver bool   `json:"redeliver"`
		} `json:"dead_letters"`
	}
	for _, nd := range tc.nodes {
		eventually.Holds(t, time.Minute, "three dead letters on "+nd.ID, func() error {
			dead.Dead = nil
			if st, code := api(nd, "GET", path, tc.root, nil, &dead); st != 200 {
				return fmt.Errorf("%d %s", st, code)
			}
			if len(dead.Dead) != 3 {
				return fmt.Errorf("%d dead letters", len(dead.Dead))
			}
			return nil
		})
	}
	var raw json.RawMessage
	mustAPI(t, tc.nodes[0], "GET", path, tc.root, nil, &raw)
	if strings.Contains(string(raw), "a secret the dead letter") {
		t.Fatalf("a dead letter holds the message: %s", raw)
	}
	rcv.start(t)
	defer rcv.kill()
	mustAPI(t, tc.nodes[1], "POST", "/v1/admin/workspaces/acme/webhooks/"+made.Webhook.ID+"/redeliver", tc.root, map[string]any{}, nil)
	eventually.Holds(t, time.Minute, "every dead letter redelivered", func() error {
		dead.Dead = nil
		if st, code := api(tc.nodes[0], "GET", path, tc.root, nil, &dead); st != 200 || len(dead.Dead) != 0 {
			return fmt.Errorf("%d %s: %d dead letters left", st, code, len(dead.Dead))
		}
		return nil
	})
	got := map[string]bool{}
	for _, d := range readDeliveries(t, rcv.out) {
		var p payload
		if !d.OK || json.Unmarshal(d.Body, &p) != nil {
			t.Fatalf("a redelivery failed verification: %+v", d)
		}
		got[p.Data.Message.ID] = true
	}
	for id := range w.acked {
		if !got[id] {
			t.Errorf("message %s was not redelivered (got %v)", id, got)
		}
	}
}

// TestWebhookStatusChangedNeverANote: an agent on another node writes a
// note, tags the conversation and resolves it; the endpoint receives the
// visitor's message and conversation.status_changed, verified, and no
// delivery carries the note's text or the tag.
func TestWebhookStatusChangedNeverANote(t *testing.T) {
	tc, _, rcv := webhookRig(t, 2, []string{"message.created", "message.edited", "conversation.status_changed"})
	rcv.start(t)
	defer rcv.kill()
	ctx := testCtx(t, time.Minute)
	w := newVisitorWriter(t, ctx, "acme", "my invoice is wrong")
	w.write(tc.nodes[0], "m-hook", 1)
	ag := tc.agentOn(t, ctx, tc.nodes[0], tc.nodes[1], "acme", "sam")
	const note = "NOTE-CANARY-webhook"
	for _, f := range []map[string]any{
		{"type": "send", "id": "n-hook-000001", "body": note, "internal": true},
		{"type": "edit", "id": "n-hook-000001", "body": note + " edited"},
		{"type": "inbox", "id": "i-hook-000001", "tag": "canary-tag", "on": true},
		{"type": "inbox", "id": "i-hook-000002", "status": "resolved"},
	} {
		f["conversation"] = w.conv
		frameUntilAcked(t, ctx, ag, f)
	}
	w.write(tc.nodes[0], "m-last", 1)
	want := []string{"message.created m-hook-000000", "conversation.status_changed resolved a:sam", "message.created m-last-000000"}
	eventually.Holds(t, 30*time.Second, "the events delivered", func() error {
		var got []string
		for _, d := range readDeliveries(t, rcv.out) {
			if !d.OK {
				return fmt.Errorf("a delivery failed verification: %s", d.Body)
			}
			if strings.Contains(string(d.Body), "CANARY") || strings.Contains(string(d.Body), "canary-tag") {
				t.Fatalf("a delivery carries an internal message: %s", d.Body)
			}
			var p struct {
				Type string `json:"type"`
				Data struct {
					Message *struct{ ID string }         `json:"message"`
					Status  *struct{ Status, By string } `json:"status"`
				} `json:"data"`
			}
			if err := json.Unmarshal(d.Body, &p); err != nil {
				return err
			}
			k := p.Type
			if p.Data.Message != nil {
				k += " " + p.Data.Message.ID
			}
			if p.Data.Status != nil {
				k += " " + p.Data.Status.Status + " " + p.Data.Status.By
			}
			if !slices.Contains(got, k) {
				got = append(got, k)
			}
		}
		if !slices.Equal(got, want) {
			return fmt.Errorf("got %q", got)
		}
		return nil
	})
}
