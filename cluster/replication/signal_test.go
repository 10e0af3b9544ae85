package replication

import (
	"encoding/json"
	"testing"

	"parley/crdt"
	"parley/gateway"
)

// TestSignalWireAsEarlierVersions holds the signals between nodes to the
// JSON that nodes of earlier versions send and read, so that a cluster
// upgraded one node at a time keeps its presence, receipts and erasures.
func TestSignalWireAsEarlierVersions(t *testing.T) {
	t.Parallel()
	// A participant's signal is encoded as before, field for field.
	lease := gateway.Signal{Kind: gateway.SignalLease, Workspace: "acme", Participant: "v:ada", Role: "visitor", Name: "Ada",
		LeaseID: "n1/7", TS: crdt.Timestamp{Wall: 5, Logical: 1, Node: "n1"}, Expires: 9}
	const wantLease = `{"k":"lease","ws":"acme","p":"v:ada","r":"visitor","n":"Ada","l":"n1/7","ts":{"w":5,"l":1,"n":"n1"},"e":9}`
	if b, err := json.Marshal(lease); err != nil || string(b) != wantLease {
		t.Errorf("lease signal = %s, %v; want %s", b, err, wantLease)
	}
	read := gateway.Signal{Kind: gateway.SignalRead, Workspace: "acme", Conversation: "c_1", Participant: "a:sam", Role: "agent", Vector: "n1.3"}
	const wantRead = `{"k":"read","ws":"acme","conv":"c_1","p":"a:sam","r":"agent","ts":{"w":0,"l":0,"n":""},"e":0,"v":"n1.3"}`
	if b, err := json.Marshal(read); err != nil || string(b) != wantRead {
		t.Errorf("read signal = %s, %v; want %s", b, err, wantRead)
	}

	// What an earlier node read every signal into.
	type earlier struct {
		Kind         string `json:"k"`
		Workspace    string `json:"ws"`
		Conversation string `json:"conv"`
	}
	b, _ := json.Marshal(signalHead{Kind: signalResync})
	var e earlier
	if err := json.Unmarshal(b, &e); err != nil || e.Kind != "resync" {
		t.Errorf("resync %s read by an earlier node as %+v, %v", b, e, err)
	}

	// What earlier nodes send: a resync was a whole empty signal, and an
	// erasure carried a placeholder participant.
	for _, tc := range []struct {
		b    string
		kind gateway.SignalKind
	}{
		{`{"k":"resync","ws":"","p":"","r":"","ts":{"w":0,"l":0,"n":""},"e":0}`, signalResync},
		{`{"k":"erase","ws":"acme","conv":"c_0123456789abcdef01234567","p":"-","r":"agent","ts":{"w":0,"l":0,"n":""},"e":0}`, signalErase},
		{`{"k":"replies-want","ws":"acme"}`, signalRepliesWant},
		{wantLease, gateway.SignalLease},
	} {
		var h signalHead
		if err := json.Unmarshal([]byte(tc.b), &h); err != nil || h.Kind != tc.kind {
			t.Errorf("%s: kind %q, %v; want %q", tc.b, h.Kind, err, tc.kind)
		}
		if h.Kind.OfParticipant() != (tc.kind == gateway.SignalLease) {
			t.Errorf("%s: taken as a participant's: %v", tc.b, h.Kind.OfParticipant())
		}
	}
	var x eraseSignal
	if err := json.Unmarshal([]byte(`{"k":"erase","ws":"acme","conv":"c_0123456789abcdef01234567","p":"-","r":"agent","ts":{"w":0,"l":0,"n":""},"e":0}`), &x); err != nil ||
		x.Workspace != "acme" || x.Conversation != "c_0123456789abcdef01234567" {
		t.Errorf("an earlier node's erasure read as %+v, %v", x, err)
	}
}
