package node

import (
	"bytes"
	"net/http"
	"net/http/httptest"
	"strconv"
	"strings"
	"testing"
	"time"

	"parley/cluster"
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
		{[]string{"eu", "us", "ap"}, "sa", voterAuto, false}, // the leader promotes in pairs
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

func TestPromotions(t *testing.T) {
	t.Parallel()
	m := func(id, region string, voter bool) cluster.Member {
		return cluster.Member{ID: id, Region: region, Voter: voter, Addr: "127.0.0.1:1"}
	}
	all := func(string) bool { return true }
	none := func(string) bool { return false }
	cases := []struct {
		name    string
		members []cluster.Member
		alive   func(string) bool
		stay    func(string) bool
		want    string
	}{
		{"3 voters, 2 candidates: spread regions first", []cluster.Member{m("n1", "eu", true), m("n2", "eu", true), m("n3", "us", true),
			m("n4", "us", false), m("n5", "ap", false), m("n6", "eu", false)}, all, none, "n5 n4"},
		{"only one candidate", []cluster.Member{m("n1", "eu", true), m("n2", "eu", true), m("n3", "us", true), m("n4", "us", false)}, all, none, ""},
		{"already 5", []cluster.Member{m("n1", "eu", true), m("n2", "eu", true), m("n3", "us", true), m("n4", "us", true), m("n5", "ap", true), m("n6", "ap", false), m("n7", "ap", false)}, all, none, ""},
		{"a voter is down", []cluster.Member{m("n1", "eu", true), m("n2", "eu", true), m("n3", "us", true), m("n4", "us", false), m("n5", "ap", false)},
			func(id string) bool { return id != "n2" }, none, ""},
		{"a candidate asked to stay", []cluster.Member{m("n1", "eu", true), m("n2", "eu", true), m("n3", "us", true), m("n4", "us", false), m("n5", "ap", false)},
			all, func(id string) bool { return id == "n5" }, ""},
		{"a dead candidate", []cluster.Member{m("n1", "eu", true), m("n2", "eu", true), m("n3", "us", true), m("n4", "us", false), m("n5", "ap", false), m("n6", "ap", false)},
			func(id string) bool { return id != "n5" }, none, "n6 n4"},
	}
	for _, c := range cases {
		var got []string
		for _, p := range promotions(c.members, c.alive, c.stay) {
			got = append(got, p.ID)
		}
		if strings.Join(got, " ") != c.want {
			t.Errorf("%s: promote %v, want %q", c.name, got, c.want)
		}
	}
}
