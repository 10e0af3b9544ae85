package node

import (
	"bytes"
	"net/http"
	"net/http/httptest"
	"strconv"
	"testing"
	"time"
)

func TestPeerSignatures(t *testing.T) {
	t.Parallel()
	key := []byte("0123456789abcdef0123456789abcdef")
	now := time.Now()
	signed := func(path string, body []byte, at time.Time, k []byte) *httptestRequest {
		ts := strconv.FormatInt(at.UnixMilli(), 10)
		r := httptest.NewRequest("POST", path, bytes.NewReader(body))
		r.Header.Set(hdrNodeTime, ts)
		r.Header.Set(hdrNodeSig, sign(k, "POST", path, ts, body))
		return &httptestRequest{r}
	}
	body := []byte(`{"index":7}`)
	cases := []struct {
		name string
		req  *httptestRequest
		ok   bool
	}{
		{"valid", signed(pathWait, body, now, key), true},
		{"other key", signed(pathWait, body, now, []byte("another key of thirty-two bytes!")), false},
		{"too old", signed(pathWait, body, now.Add(-time.Minute), key), false},
		{"from the future", signed(pathWait, body, now.Add(time.Minute), key), false},
		{"body changed", signed(pathWait, body, now, key).withBody([]byte(`{"index":8}`)), false},
		{"path changed", signed(pathWait, body, now, key).withPath(pathForward), false},
		{"no time", signed(pathWait, body, now, key).withHeader(hdrNodeTime, ""), false},
		{"no signature", signed(pathWait, body, now, key).withHeader(hdrNodeSig, ""), false},
	}
	for _, c := range cases {
		got, err := verifyPeer(key, c.req.r, now)
		if (err == nil) != c.ok {
			t.Errorf("%s: err %v", c.name, err)
		}
		if c.ok && !bytes.Equal(got, body) {
			t.Errorf("%s: body %q", c.name, got)
		}
	}
}

type httptestRequest struct{ r *http.Request }

func (h *httptestRequest) withBody(b []byte) *httptestRequest {
	r := httptest.NewRequest("POST", h.r.URL.Path, bytes.NewReader(b))
	r.Header = h.r.Header
	return &httptestRequest{r}
}

func (h *httptestRequest) withPath(p string) *httptestRequest {
	h.r.URL.Path = p
	return h
}

func (h *httptestRequest) withHeader(k, v string) *httptestRequest {
	h.r.Header.Set(k, v)
	return h
}

func TestWantsVote(t *testing.T) {
	t.Parallel()
	cases := []struct {
		voters    []string // regions of the other voters
		region    string
		mode      string
		wantVoter bool
	}{
		{nil, "eu", voterAuto, true},
		{[]string{"eu", "eu"}, "eu", voterAuto, true},
		{[]string{"eu", "us", "ap"}, "eu", voterAuto, false},
		{[]string{"eu", "us", "ap"}, "sa", voterAuto, true},
		{[]string{"eu", "us", "ap", "sa", "af"}, "oc", voterAuto, false},
		{[]string{"eu", "us", "ap"}, "eu", voterYes, true},
		{nil, "eu", voterNo, false},
	}
	for _, c := range cases {
		got := wantsVoteFrom(c.voters, joinRequest{ID: "new", Region: c.region, Voter: c.mode})
		if got != c.wantVoter {
			t.Errorf("voters in %v, %s joins with %s: voter %v, want %v", c.voters, c.region, c.mode, got, c.wantVoter)
		}
	}
}
