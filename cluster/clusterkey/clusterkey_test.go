package clusterkey

import (
	"bytes"
	"encoding/hex"
	"os"
	"path/filepath"
	"testing"
)

// The admin token is a contract between parleyctl and the nodes, and
// between versions: these values were computed by the code before it moved
// here (node.AdminToken), so a change to the file format, the derivation or
// the label fails here.
func TestAdminTokenIsStable(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	for _, tt := range []struct{ name, file, want string }{
		{"hex", "000102030405060708090a0b0c0d0e0f101112131415161718191a1b1c1d1e1f\n", "pa_JxFIQ7lC8YCf4zNxHmH8e_f9q_7rmu-Kj3QCddzxzPI"},
		{"raw text", "  a passphrase of at least 32 bytes, kept as text  \n", "pa_w-LyVOhuexFYDuntfdV7wlFr-zvh_7G_ybTo2J_pe5s"},
	} {
		path := filepath.Join(dir, tt.name)
		if err := os.WriteFile(path, []byte(tt.file), 0o600); err != nil {
			t.Fatal(err)
		}
		got, err := AdminToken(path)
		if err != nil || got != tt.want {
			t.Errorf("%s: AdminToken = %q, %v; want %q", tt.name, got, err, tt.want)
		}
	}
}

func TestLoad(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	short := filepath.Join(dir, "short")
	if err := os.WriteFile(short, []byte("too short\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	if _, err := Load(short, true); err == nil {
		t.Error("a key of 9 bytes was accepted")
	}
	missing := filepath.Join(dir, "sub", "cluster.key")
	if _, err := Load(missing, false); err == nil {
		t.Error("a missing key was accepted without generate")
	}
	k, err := Load(missing, true)
	if err != nil || len(k) != MinLen {
		t.Fatalf("generate: %d bytes, %v", len(k), err)
	}
	again, err := Load(missing, false)
	if err != nil || string(again) != string(k) {
		t.Fatalf("the generated key does not read back: %v", err)
	}
	if fi, err := os.Stat(missing); err != nil || fi.Mode().Perm() != 0o600 {
		t.Fatalf("generated key file: %v %v", fi.Mode(), err)
	}
}

// The store's KEK seals every conversation key on disk: a change of the
// derivation or its label would leave every node's store unopenable.
func TestStoreKEKIsStable(t *testing.T) {
	t.Parallel()
	k := Key(bytes.Repeat([]byte{0x11}, MinLen))
	if got := hex.EncodeToString(k.StoreKEK()); got != "ed768b2c024e14836604253c005b3302741a77db7e7532e9205b5e0510554c8a" {
		t.Errorf("StoreKEK = %s", got)
	}
}
