package cluster

import (
	"bytes"
	"log/slog"
	"strings"
	"testing"

	"github.com/hashicorp/go-hclog"
)

func TestHclogAdapterFormatsFmtValues(t *testing.T) {
	var b bytes.Buffer
	a := &hclogAdapter{l: slog.New(slog.NewJSONHandler(&b, nil)), name: "raft"}
	a.Info("initial configuration", "index", 1, "servers", hclog.Fmt("%+v", []struct{ ID string }{{"n1"}}))
	if got := b.String(); !strings.Contains(got, `"servers":"[{ID:n1}]"`) {
		t.Fatalf("logged %s", got)
	}
}

// A JSON log line names each key once: the node's logger carries "node", and
// raft's own "node" argument is renamed rather than repeated.
func TestHclogAdapterDoesNotRepeatTheNodeKey(t *testing.T) {
	var b bytes.Buffer
	a := &hclogAdapter{l: slog.New(slog.NewJSONHandler(&b, nil)).With("node", "n1"), name: "raft"}
	a.Info("entering candidate state", "node", "Node at 127.0.0.1:7000 [Candidate]", "term", 2)
	got := b.String()
	if strings.Count(got, `"node":`) != 1 || !strings.Contains(got, `"raft_node":"Node at 127.0.0.1:7000 [Candidate]"`) {
		t.Fatalf("logged %s", got)
	}
}
