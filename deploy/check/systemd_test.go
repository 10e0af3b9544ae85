package check

import (
	"bufio"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

var unitFile = filepath.Join(deployDir, "systemd", "parley.service")

// unitWithBinary is the unit as shipped, with ExecStart's binary pointed at
// an executable in a temporary directory (verify checks that the binary
// exists; nothing here installs parley in /usr/local/bin).
func unitWithBinary(t *testing.T) string {
	t.Helper()
	b, err := os.ReadFile(unitFile)
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	bin := filepath.Join(dir, "parley")
	if err := os.WriteFile(bin, []byte("#!/bin/sh\n"), 0o755); err != nil {
		t.Fatal(err)
	}
	text := strings.Replace(string(b), "ExecStart=/usr/local/bin/parley ", "ExecStart="+bin+" ", 1)
	if text == string(b) {
		t.Fatal("ExecStart does not start /usr/local/bin/parley")
	}
	p := filepath.Join(dir, "parley.service")
	if err := os.WriteFile(p, []byte(text), 0o644); err != nil {
		t.Fatal(err)
	}
	return p
}

// TestSystemdUnitVerifies: systemd-analyze verify finds nothing to say
// (it exits 0 on an unknown directive, with a warning: any output fails),
// and its offline security review rates the unit's exposure 2.0 or less.
func TestSystemdUnitVerifies(t *testing.T) {
	sa := tool(t, "SYSTEMD_ANALYZE", "systemd-analyze")
	unit := unitWithBinary(t)
	out, errOut := run(t, sa, "verify", "--man=no", unit)
	if strings.TrimSpace(out+errOut) != "" {
		t.Fatalf("systemd-analyze verify: %s%s", out, errOut)
	}
	out, _ = run(t, sa, "security", "--offline=true", "--threshold=20", unit)
	t.Log(lastLine(out))
}

func lastLine(s string) string {
	lines := strings.Split(strings.TrimSpace(s), "\n")
	return lines[len(lines)-1]
}

// TestSystemdUnitHardening: the directives the unit is hardened by are
// there with their values, so that a later edit cannot drop one unseen.
func TestSystemdUnitHardening(t *testing.T) {
	f, err := os.Open(unitFile)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	got := map[string][]string{}
	section := ""
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		line := strings.TrimSpace(sc.Text())
		switch {
		case line == "" || strings.HasPrefix(line, "#"):
		case strings.HasPrefix(line, "["):
			section = line
		default:
			k, v, ok := strings.Cut(line, "=")
			if !ok {
				t.Fatalf("not a directive: %q", line)
			}
			got[section+k] = append(got[section+k], v)
		}
	}
	want := map[string]string{
		"NoNewPrivileges": "yes", "ProtectSystem": "strict", "ProtectHome": "yes", "PrivateTmp": "yes",
		"PrivateDevices": "yes", "ProtectKernelTunables": "yes", "ProtectKernelModules": "yes",
		"ProtectKernelLogs": "yes", "ProtectControlGroups": "yes", "ProtectClock": "yes", "ProtectHostname": "yes",
		"RestrictNamespaces": "yes", "RestrictRealtime": "yes", "RestrictSUIDSGID": "yes", "LockPersonality": "yes",
		"MemoryDenyWriteExecute": "yes", "SystemCallArchitectures": "native", "UMask": "0077",
		"CapabilityBoundingSet": "CAP_NET_BIND_SERVICE", "AmbientCapabilities": "CAP_NET_BIND_SERVICE",
		"User": "parley", "StateDirectory": "parley", "StateDirectoryMode": "0700",
		"LoadCredential": "cluster.key:/etc/parley/cluster.key", "KillSignal": "SIGTERM",
		"RestrictAddressFamilies": "AF_INET AF_INET6 AF_UNIX AF_NETLINK",
	}
	for k, v := range want {
		if vs := got["[Service]"+k]; len(vs) != 1 || vs[0] != v {
			t.Errorf("[Service] %s=%v, want %s", k, vs, v)
		}
	}
	if vs := got["[Service]SystemCallFilter"]; len(vs) != 2 || vs[0] != "@system-service" || !strings.HasPrefix(vs[1], "~") {
		t.Errorf("SystemCallFilter %v: want @system-service, then a deny list", vs)
	}
	if es := got["[Service]ExecStart"]; len(es) != 1 || !strings.Contains(es[0], "-config /etc/parley/parley.yaml") || !strings.Contains(es[0], "-cluster-key %d/cluster.key") {
		t.Errorf("ExecStart %v", es)
	}
}

// TestExampleConfigKeys: deploy/parley.yaml, which the unit reads, holds
// only settings of the node.
func TestExampleConfigKeys(t *testing.T) {
	b, err := os.ReadFile(filepath.Join(deployDir, "parley.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	keys := settingKeys(t)
	for _, line := range strings.Split(string(b), "\n") {
		if line == "" || line[0] == '#' || line[0] == ' ' {
			continue
		}
		k, _, _ := strings.Cut(line, ":")
		if !keys[k] {
			t.Errorf("deploy/parley.yaml: %q is no setting of the node", k)
		}
	}
}
