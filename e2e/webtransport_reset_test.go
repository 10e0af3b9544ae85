package e2e

import (
	"bufio"
	"context"
	"encoding/base64"
	"encoding/json"
	"net/http"
	"net/url"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/quic-go/quic-go"
	"github.com/quic-go/webtransport-go"
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
	d := &webtransport.Transport{
		TLSClientConfig: pinned(hash),
		QUICConfig:      &quic.Config{MaxIdleTimeout: 60 * time.Second, EnableDatagrams: true, EnableStreamResetPartialDelivery: true},
	}
	_, sess, err := d.Dial(ctx, wtURL, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer sess.CloseWithError(0, "")
	str, err := sess.OpenStreamSync(ctx)
	if err != nil {
		t.Fatal(err)
	}
	lines := make(chan string, 16)
	go func() {
		defer close(lines)
		br := bufio.NewReader(str)
		for {
			l, err := br.ReadString('\n')
			if err != nil {
				return
			}
			lines <- l
		}
	}()
	str.Write([]byte(`{"type":"hello","v":1,"workspace":"demo","role":"visitor"}` + "\n"))
	select {
	case l := <-lines:
		if !strings.Contains(l, `"welcome"`) {
			t.Fatalf("first frame %s", l)
		}
	case <-ctx.Done():
		t.Fatal("no welcome")
	}

	n.Kill9(t)
	n.Restart(t)
	if again, _ := transportInfo(t, n); again != wtURL {
		t.Skipf("the restarted node took another UDP port (%s, was %s): nothing to reset", again, wtURL)
	}
	start := time.Now()
	str.Write([]byte(`{"type":"ping","ref":"p"}` + "\n"))
	select {
	case l, ok := <-lines:
		if ok {
			t.Fatalf("the old session answered after a restart: %s", l)
		}
	case <-sess.Context().Done():
	case <-ctx.Done():
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
