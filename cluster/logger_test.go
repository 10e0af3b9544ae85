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
