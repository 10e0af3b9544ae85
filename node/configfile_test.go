package node

import (
	"errors"
	"flag"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"
	"time"
)

func writeConfig(t *testing.T, text string) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), "parley.yaml")
	if err := os.WriteFile(p, []byte(text), 0o600); err != nil {
		t.Fatal(err)
	}
	return p
}

// TestConfigFile: the file sets what neither the command line nor the
// environment set, list settings take YAML lists, and YAML's own words
// (yes, off) reach the flags as written.
func TestConfigFile(t *testing.T) {
	p := writeConfig(t, `
# a node of region eu
node: from-file
region: eu
http: 127.0.0.1:9090
join: [127.0.0.1:7001, "127.0.0.1:7002"]
trusted-proxies: 10.0.0.0/8, 127.0.0.1
no-demo: true
voter: yes
embedder: off
workspace-rate: 50
lease: 5s
`)
	t.Setenv("PARLEY_REGION", "us")
	c, err := ParseFlags([]string{"-config", p, "-node", "from-flag"})
	if err != nil {
		t.Fatal(err)
	}
	if c.NodeID != "from-flag" || c.Region != "us" || c.HTTPAddr != "127.0.0.1:9090" {
		t.Errorf("node %q (want the flag's), region %q (want the environment's), http %q (want the file's)", c.NodeID, c.Region, c.HTTPAddr)
	}
	if !slices.Equal(c.Join, []string{"127.0.0.1:7001", "127.0.0.1:7002"}) || !slices.Equal(c.TrustedProxies, []string{"10.0.0.0/8", "127.0.0.1"}) {
		t.Errorf("join %q, trusted-proxies %q", c.Join, c.TrustedProxies)
	}
	if !c.NoDemo || c.Voter != voterYes || c.Embedder != embedderOff || c.WorkspaceRate != 50 || c.Lease != 5*time.Second {
		t.Errorf("no-demo %v, voter %q, embedder %q, workspace-rate %v, lease %v", c.NoDemo, c.Voter, c.Embedder, c.WorkspaceRate, c.Lease)
	}

	// PARLEY_CONFIG names the file as -config does.
	t.Setenv("PARLEY_CONFIG", p)
	if c, err = ParseFlags(nil); err != nil || c.NodeID != "from-file" {
		t.Errorf("PARLEY_CONFIG: node %q, %v", c.NodeID, err)
	}
}

func TestConfigFileRefusesWhatIsNotASetting(t *testing.T) {
	for _, c := range []struct{ name, text, want string }{
		{"unknown key", "nodes: n1\n", `"nodes" is not a setting`},
		{"config in config", "config: other.yaml\n", `"config" is not a setting`},
		{"bad value", "workspace-rate: fast\n", "workspace-rate"},
		{"nested", "http:\n  addr: 1\n", "a single value"},
		{"list of a single setting", "node: [a, b]\n", "a single value"},
		{"duplicate", "node: a\nnode: b\n", "given twice"},
		{"empty value", "node:\n", "no value"},
		{"not a mapping", "- node\n", "not a mapping"},
		{"invalid setting", "voter: maybe\n", "voter"},
	} {
		t.Run(c.name, func(t *testing.T) {
			_, err := ParseFlags([]string{"-config", writeConfig(t, c.text)})
			if err == nil || !strings.Contains(err.Error(), c.want) {
				t.Fatalf("err %v, want it to say %q", err, c.want)
			}
		})
	}
	if _, err := ParseFlags([]string{"-config", filepath.Join(t.TempDir(), "missing.yaml")}); !errors.Is(err, ErrConfigFile) {
		t.Errorf("missing file: %v", err)
	}
}

// TestREADMEFlagsTable: the README's table lists every flag once, with its
// file key (the flag's name) and its environment variable, and nothing
// else.
func TestREADMEFlagsTable(t *testing.T) {
	b, err := os.ReadFile("../README.md")
	if err != nil {
		t.Fatal(err)
	}
	row := regexp.MustCompile("^\\| ((?:`-[a-z0-9-]+`(?:, )?)+) \\|([^|]*)\\|([^|]*)\\|")
	code := regexp.MustCompile("`([^`]+)`")
	documented := map[string]bool{}
	for _, line := range strings.Split(string(b), "\n") {
		m := row.FindStringSubmatch(line)
		if m == nil {
			continue
		}
		var flags, keys, envs []string
		for _, f := range code.FindAllStringSubmatch(m[1], -1) {
			flags = append(flags, strings.TrimPrefix(f[1], "-"))
		}
		for _, k := range code.FindAllStringSubmatch(m[2], -1) {
			keys = append(keys, k[1])
		}
		for _, e := range code.FindAllStringSubmatch(m[3], -1) {
			envs = append(envs, e[1])
		}
		var wantKeys, wantEnvs []string
		for _, f := range flags {
			if documented[f] {
				t.Errorf("-%s: listed twice", f)
			}
			documented[f] = true
			if f != "config" {
				wantKeys = append(wantKeys, f)
			}
			if e, ok := flagEnv[f]; ok {
				wantEnvs = append(wantEnvs, e)
			}
		}
		if !slices.Equal(keys, wantKeys) || !slices.Equal(envs, wantEnvs) {
			t.Errorf("%s: file keys %q, env %q; want %q, %q", m[1], keys, envs, wantKeys, wantEnvs)
		}
	}
	var c Config
	newFlagSet(&c).fs.VisitAll(func(f *flag.Flag) {
		if !documented[f.Name] {
			t.Errorf("-%s is not in the README's table", f.Name)
		}
		delete(documented, f.Name)
	})
	for f := range documented {
		t.Errorf("the README's table lists -%s, which is not a flag", f)
	}
	for f := range flagEnv {
		var c Config
		if newFlagSet(&c).fs.Lookup(f) == nil {
			t.Errorf("flagEnv names -%s, which is not a flag", f)
		}
	}
}

// TestJoinListNamingItselfBootstraps: a node given a -join list that names
// only its own link address, by a name that resolves to it (as the Helm
// chart gives every node one list of DNS names), bootstraps a cluster
// instead of asking itself to be added.
func TestJoinListNamingItselfBootstraps(t *testing.T) {
	t.Parallel()
	addr := fmt.Sprintf("127.0.0.1:%d", freePort(t))
	key := writeConfig(t, strings.Repeat("5a", 32)+"\n") // the cluster key, from a Secret in the chart
	r := runNode(t, Config{DataDir: t.TempDir(), NoDemo: true, RaftAddr: addr, Join: []string{strings.Replace(addr, "127.0.0.1", "localhost", 1)}, ClusterKey: key})
	if s := r.n.ctl.c.Stats(); s.State != "Leader" || s.Voters != 1 {
		t.Fatalf("raft state %s with %d voters, want the leader of a cluster of one", s.State, s.Voters)
	}
}

func TestDropSelf(t *testing.T) {
	join := []string{"127.0.0.1:7000", "localhost:7000", "127.0.0.1:7001", "127.0.0.2:7000", "no-such-host.invalid:7000"}
	if got, want := dropSelf(join, "127.0.0.1:7000"), []string{"127.0.0.1:7001", "127.0.0.2:7000", "no-such-host.invalid:7000"}; !slices.Equal(got, want) {
		t.Errorf("dropSelf = %q, want %q", got, want)
	}
	if got, want := dropSelf(join, "localhost:7001"), []string{"127.0.0.1:7000", "localhost:7000", "127.0.0.2:7000", "no-such-host.invalid:7000"}; !slices.Equal(got, want) {
		t.Errorf("dropSelf by name = %q, want %q", got, want)
	}
}

// TestExampleConfigFileParses: deploy/parley.yaml, the file the systemd
// unit reads, is a valid config of the node.
func TestExampleConfigFileParses(t *testing.T) {
	c, err := ParseFlags([]string{"-config", "../deploy/parley.yaml"})
	if err != nil {
		t.Fatal(err)
	}
	if c.Region != "eu" || c.DataDir != "/var/lib/parley" || len(c.Join) != 1 || !c.NoDemo || c.RaftAddr != "0.0.0.0:7000" {
		t.Errorf("config %+v", c)
	}
}
