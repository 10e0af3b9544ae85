package e2e

import (
	"context"
	"encoding/base64"
	"encoding/json"
	"net/http"
	"net/url"
	"path/filepath"
	"testing"
	"time"

	"parley/gateway/client"

	"github.com/quic-go/quic-go"
)

// TestWebTransportSessionEndsWhenItsNodeRestarts: a node killed with
// SIGKILL sends no CONNECTION_CLOSE; once it is back on the same UDP port it
// answers the old connection's packets with a QUIC stateless reset (its key
// derived from the cluster key, the same across restarts), so a client
// learns at its next packet that the session is gone, instead of after its
// idle timeout (60 s here), and reconnects at once.
func TestWebTransportSessionEndsWhenItsNodeRestarts(t *testing.T) {
	t.Parallel()
	n := startNode(t, filepath.Join(t.TempDir(), "data"))
	wtURL, hash := transportInfo(t, n)
	ctx, cancel := context.WithTimeout(context.Background(), 90*time.Second)
	defer cancel()
	d := client.NewWTDialer(client.WTConfig{
		CertHashes: [][]byte{hash},
		QUIC:       &quic.Config{MaxIdleTimeout: 60 * time.Second, EnableDatagrams: true, EnableStreamResetPartialDelivery: true},
		Sockets:    1,
	})
	defer d.Close()
	c, err := d.Dial(ctx, wtURL, client.Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer c.CloseNow()
	c.Write(ctx, []byte(`{"type":"hello","v":1,"workspace":"demo","role":"visitor"}`))
	if f, err := c.Next(ctx); err != nil {
		t.Fatalf("no welcome: %v", err)
	} else if f.Type != "welcome" {
		t.Fatalf("first frame %s", f.Raw)
	}

	n.Kill9(t)
	n.Restart(t)
	if again, _ := transportInfo(t, n); again != wtURL {
		t.Skipf("the restarted node took another UDP port (%s, was %s): nothing to reset", again, wtURL)
	}
	start := time.Now()
	c.Write(ctx, []byte(`{"type":"ping","ref":"p"}`))
	if f, err := c.Next(ctx); err == nil {
		t.Fatalf("the old session answered after a restart: %s", f.Raw)
	} else if ctx.Err() != nil {
		t.Fatal("the old session never ended")
	}
	took := time.Since(start)
	t.Logf("the old session ended %s after its next packet", took.Round(time.Millisecond))
	if took > 20*time.Second {
		// Not a performance bound: without the reset the session lasts
		// until the client's 60 s idle timeout.
		t.Errorf("the old session ended only after %s: no stateless reset", took)
	}
}

// transportInfo reads a node's WebTransport URL and certificate hash.
func transportInfo(t *testing.T, n *nodeProc) (string, []byte) {
	t.Helper()
	resp, err := http.Get(n.URL + "/v1/transport")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var info struct {
		WebTransport struct {
			URL        string   `json:"url"`
			CertHashes []string `json:"cert_hashes"`
		} `json:"webtransport"`
	}
	if err := json.NewDecoder(resp.Body).Decode(&info); err != nil || len(info.WebTransport.CertHashes) == 0 {
		t.Fatalf("/v1/transport: %v %+v", err, info)
	}
	if _, err := url.Parse(info.WebTransport.URL); err != nil {
		t.Fatal(err)
	}
	hash, _ := base64.StdEncoding.DecodeString(info.WebTransport.CertHashes[0])
	return info.WebTransport.URL, hash
}
