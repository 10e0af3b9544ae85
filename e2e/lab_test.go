package e2e

import (
	"bufio"
	"bytes"
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"errors"
	"fmt"
	"io"
	"math/big"
	"net"
	"net/http"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"go.yaml.in/yaml/v3"

	"parley/cluster/clusterkey"
	"parley/cluster/membership"
	"parley/internal/eventually"
	"parley/internal/localcluster"
	"parley/internal/nfqdelay"
)

// The multi-host lab (make lab; docs/operations.md, "The lab"): six nodes,
// each a host of its own in a network namespace with its own address, two
// in each of three regions, started as deploy/ ships them: the systemd
// unit's ExecStart command line (the binary, not systemd) reading a config
// file made from deploy/parley.yaml, with TLS on the client listener from
// a throwaway CA. Packets between regions are held by an NFQUEUE delayer
// (internal/nfqdelay) and a share of them dropped; within a region and
// from the test (the clients) they are not.
//
// Six nodes: two per region, so that a workspace pinned to a region has
// two replicas there (W=2 inside the region); they start one region after
// the other (eu-0, us-0, ap-0, then eu-1, us-1, ap-1), so -voter auto (the
// example's) makes the first three voters, one per region, and the leader
// then promotes two more: five voters, an odd count, and a cut of any one
// region leaves a quorum.

// labEnv, set, runs the lab test (make lab); without it the test skips,
// so that the full suite does not run it twice.
const labEnv = "PARLEY_LAB"

// The lab's nodes in the order they start, with their region; node i's
// host name is id + labDomain, as in deploy/parley.yaml.
var labNodes = []struct{ id, region string }{
	{"eu-0", "eu"}, {"us-0", "us"}, {"ap-0", "ap"}, {"eu-1", "eu"}, {"us-1", "us"}, {"ap-1", "ap"},
}

const labDomain = ".parley.internal"

// The files of deploy/ the lab starts its nodes from.
const (
	labConfigFile = "../deploy/parley.yaml"
	labUnitFile   = "../deploy/systemd/parley.service"
)

// labVoters is how many voters -voter auto gives the lab's six nodes.
const labVoters = 5

// The lab's throwaway CA, made by TestMain (addLabCA) and trusted by every
// client of this package: it signs each lab node's certificate for its
// own address and name.
var (
	labCACert *x509.Certificate
	labCAKey  *ecdsa.PrivateKey
)

// addLabCA makes the lab's CA and adds it to pool.
func addLabCA(pool *x509.CertPool) error {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return err
	}
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "parley lab CA"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(24 * time.Hour),
		IsCA: true, BasicConstraintsValid: true, KeyUsage: x509.KeyUsageCertSign | x509.KeyUsageDigitalSignature,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		return err
	}
	if labCACert, err = x509.ParseCertificate(der); err != nil {
		return err
	}
	labCAKey = key
	pool.AddCert(labCACert)
	return nil
}

// labLeaf writes a certificate for a lab node (its address and its name),
// signed by the lab's CA, and its key, as PEM files.
func labLeaf(certFile, keyFile, ip, name string) error {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return err
	}
	serial, err := rand.Int(rand.Reader, new(big.Int).Lsh(big.NewInt(1), 62))
	if err != nil {
		return err
	}
	tmpl := &x509.Certificate{
		SerialNumber: serial, Subject: pkix.Name{CommonName: name},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(24 * time.Hour),
		IPAddresses: []net.IP{net.ParseIP(ip)}, DNSNames: []string{name},
		KeyUsage: x509.KeyUsageDigitalSignature, ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, labCACert, &key.PublicKey, labCAKey)
	if err != nil {
		return err
	}
	return writeCert(certFile, keyFile, der, key)
}

// labUnit is what the lab takes from the systemd unit: its ExecStart
// command line and its credentials (LoadCredential=NAME:PATH).
type labUnit struct {
	execStart []string
	creds     map[string]string
}

// readLabUnit reads the unit's ExecStart and LoadCredential lines. What the
// lab could not honour (a second ExecStart, an ExecStart prefix, quoting,
// Environment=) fails: the lab runs what the unit says or nothing.
func readLabUnit(path string) (labUnit, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return labUnit{}, err
	}
	u := labUnit{creds: map[string]string{}}
	for line := range strings.Lines(string(b)) {
		line = strings.TrimSpace(line)
		k, v, ok := strings.Cut(line, "=")
		if !ok || strings.HasPrefix(line, "#") || strings.HasPrefix(line, ";") {
			continue
		}
		switch k {
		case "ExecStart":
			if u.execStart != nil {
				return u, fmt.Errorf("%s: more than one ExecStart", path)
			}
			if v == "" || strings.ContainsAny(v, `"'\`) || strings.ContainsAny(v[:1], "-@+!:|") {
				return u, fmt.Errorf("%s: ExecStart %q: the lab runs a plain command line only (no prefix, no quoting)", path, v)
			}
			u.execStart = strings.Fields(v)
		case "LoadCredential":
			name, src, ok := strings.Cut(v, ":")
			if !ok {
				return u, fmt.Errorf("%s: LoadCredential=%s: want NAME:PATH", path, v)
			}
			u.creds[name] = src
		case "Environment", "EnvironmentFile", "ExecStartPre", "WorkingDirectory":
			return u, fmt.Errorf("%s: %s= is not honoured by the lab (e2e/lab_test.go): teach it", path, k)
		}
	}
	if len(u.execStart) == 0 {
		return u, fmt.Errorf("%s: no ExecStart", path)
	}
	return u, nil
}

// command is the unit's ExecStart for one lab node: the binary in place of
// the installed one, its config file in place of -config's, and %d (the
// credentials directory) replaced.
func (u labUnit) command(bin, config, creds string) ([]string, error) {
	if !filepath.IsAbs(u.execStart[0]) || filepath.Base(u.execStart[0]) != "parley" {
		return nil, fmt.Errorf("ExecStart runs %s, not an installed parley", u.execStart[0])
	}
	argv := []string{bin}
	sawConfig := false
	for i := 1; i < len(u.execStart); i++ {
		a := u.execStart[i]
		if (a == "-config" || a == "--config") && i+1 < len(u.execStart) {
			argv = append(argv, a, config)
			i++
			sawConfig = true
			continue
		}
		a = strings.ReplaceAll(a, "%d", creds)
		a = strings.ReplaceAll(a, "%%", "")
		if strings.Contains(a, "%") {
			return nil, fmt.Errorf("ExecStart argument %q: a specifier the lab does not know", u.execStart[i])
		}
		argv = append(argv, a)
	}
	if !sawConfig {
		return nil, errors.New("ExecStart gives no -config FILE: the lab starts nodes from the example config file")
	}
	return argv, nil
}

// labConfig is deploy/parley.yaml with this node's values in place of the
// example node's (set, or added when the file has no such key); every other
// key is kept as the file has it.
func labConfig(example []byte, overlay map[string]string) ([]byte, error) {
	var doc yaml.Node
	if err := yaml.Unmarshal(example, &doc); err != nil {
		return nil, err
	}
	if len(doc.Content) != 1 || doc.Content[0].Kind != yaml.MappingNode {
		return nil, errors.New("not one mapping of settings")
	}
	m := doc.Content[0]
	left := map[string]string{}
	for k, v := range overlay {
		left[k] = v
	}
	for i := 0; i+1 < len(m.Content); i += 2 {
		if v, ok := left[m.Content[i].Value]; ok {
			m.Content[i+1] = &yaml.Node{Kind: yaml.ScalarNode, Tag: "!!str", Value: v}
			delete(left, m.Content[i].Value)
		}
	}
	keys := make([]string, 0, len(left))
	for k := range left {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	for _, k := range keys {
		m.Content = append(m.Content,
			&yaml.Node{Kind: yaml.ScalarNode, Value: k},
			&yaml.Node{Kind: yaml.ScalarNode, Tag: "!!str", Value: left[k]})
	}
	return yaml.Marshal(&doc)
}

// exampleSettings reads the scalar settings and the join list of the
// example config file.
func exampleSettings(example []byte) (map[string]string, []string, error) {
	var m map[string]any
	if err := yaml.Unmarshal(example, &m); err != nil {
		return nil, nil, err
	}
	out := map[string]string{}
	var join []string
	for k, v := range m {
		switch v := v.(type) {
		case []any:
			if k == "join" {
				for _, e := range v {
					join = append(join, fmt.Sprint(e))
				}
			}
		default:
			out[k] = fmt.Sprint(v)
		}
	}
	if s, ok := out["join"]; ok {
		join = strings.Split(s, ",")
	}
	return out, join, nil
}

// lab is a running lab: its namespaces, delayers and cluster.
type lab struct {
	*testCluster
	net      *localcluster.NetLab
	delayers []*nfqdelay.Delayer
	names    []string // host names, by node
	dir      string   // keys, configs, certificates, data and logs
	stopped  sync.Once
}

// labSpec says how the regions are linked.
type labSpec struct {
	delay time.Duration // one way, between nodes of different regions
	loss  float64       // share of packets between regions dropped
}

// startLab builds the lab and starts its nodes, each once the one before
// is ready, then waits until every node sees the six alive and five
// voters. The test's end (or an interrupt) stops the nodes and removes the
// namespaces; a lab left by a killed run is removed by the next one
// (localcluster.SweepNetLabs).
func startLab(t *testing.T, spec labSpec) *lab {
	t.Helper()
	if os.Getenv(labEnv) == "" {
		t.Skipf("the multi-host lab runs with make lab (%s=1)", labEnv)
	}
	if err := localcluster.NetLabAvailable(); err != nil {
		t.Fatalf("the lab needs network namespaces: %v", err)
	}
	if _, err := exec.LookPath("iptables"); err != nil {
		t.Fatalf("the lab needs iptables (make test-deps installs it): %v", err)
	}
	if swept, err := localcluster.SweepNetLabs(); err != nil {
		t.Fatalf("removing stale labs: %v", err)
	} else if len(swept) > 0 {
		t.Logf("removed stale labs %v", swept)
	}
	n := len(labNodes)
	nl, err := localcluster.NewNetLab(n)
	if err != nil {
		t.Fatal(err)
	}
	lb := &lab{net: nl}
	t.Cleanup(lb.stop)
	// An interrupt (Ctrl-C on make lab) skips the test's cleanups: stop
	// the lab here first.
	sigs := make(chan os.Signal, 1)
	signal.Notify(sigs, os.Interrupt, syscall.SIGTERM)
	done := make(chan struct{})
	t.Cleanup(func() { signal.Stop(sigs); close(done) })
	go func() {
		select {
		case sig := <-sigs:
			lb.stop()
			// What t.TempDir and TestMain would have removed.
			os.RemoveAll(lb.dir)
			os.RemoveAll(filepath.Dir(parleyBin))
			fmt.Fprintf(os.Stderr, "lab: stopped on %v\n", sig)
			os.Exit(1)
		case <-done:
		}
	}()

	for _, nd := range labNodes {
		lb.names = append(lb.names, nd.id+labDomain)
	}
	if err := nl.SetHosts(lb.names); err != nil {
		t.Fatal(err)
	}
	unit, err := readLabUnit(labUnitFile)
	if err != nil {
		t.Fatal(err)
	}
	example, err := os.ReadFile(labConfigFile)
	if err != nil {
		t.Fatal(err)
	}
	settings, join, err := exampleSettings(example)
	if err != nil {
		t.Fatalf("%s: %v", labConfigFile, err)
	}
	for _, j := range join {
		host, _, err := net.SplitHostPort(j)
		if err != nil || !slices.Contains(lb.names, host) {
			t.Fatalf("%s: join entry %q names no lab node (%v): the lab names its hosts as the example does", labConfigFile, j, lb.names)
		}
	}
	port := func(key string) string {
		_, p, err := net.SplitHostPort(settings[key])
		if err != nil {
			t.Fatalf("%s: %s %q: %v", labConfigFile, key, settings[key], err)
		}
		return p
	}
	httpPort, linkPort := port("http"), port("raft-addr")

	// Packets between regions go to queue 0 in the receiving namespace,
	// where a delayer holds them; "bypass": undelayed while none listens.
	// iptables, not nft: this kernel has nftables' queue only through
	// iptables' NFQUEUE target (nft's own "queue" fails: no such file).
	for i, nd := range labNodes {
		var remote []string
		for j, other := range labNodes {
			if other.region != nd.region {
				remote = append(remote, nl.Host(j))
			}
		}
		if err := runIn(nl, i, "iptables", "-w", "-A", "INPUT", "-s", strings.Join(remote, ","), "-j", "NFQUEUE", "--queue-num", "0", "--queue-bypass"); err != nil {
			t.Fatal(err)
		}
		d, err := nfqdelay.Start(context.Background(), nfqdelay.Config{NetNS: nl.NSPath(i), Delay: spec.delay, Loss: spec.loss})
		if err != nil {
			t.Fatalf("the delayer of %s: %v", nd.id, err)
		}
		lb.delayers = append(lb.delayers, d)
	}

	dir := t.TempDir()
	lb.dir = dir
	keyFile := filepath.Join(dir, "cluster.key")
	key, err := clusterkey.Load(keyFile, true)
	if err != nil {
		t.Fatal(err)
	}
	keyBytes, err := os.ReadFile(keyFile)
	if err != nil {
		t.Fatal(err)
	}
	cl := &localcluster.Cluster{Dir: dir, KeyFile: keyFile, AdminToken: key.AdminToken(), Lab: nl}
	lb.testCluster = &testCluster{cl: cl, keyFile: keyFile, root: key.AdminToken()}
	t.Cleanup(func() {
		if t.Failed() {
			for _, nd := range lb.nodes {
				t.Logf("%s warned:\n%s", nd.ID, lastWarnings(nd.Logs(), 40))
			}
		}
	})
	ctx := testCtx(t, 3*time.Minute)
	for i, spec := range labNodes {
		host, name := nl.Host(i), lb.names[i]
		nodeDir := filepath.Join(dir, spec.id)
		creds, tlsDir := filepath.Join(nodeDir, "credentials"), filepath.Join(nodeDir, "tls")
		for _, d := range []string{creds, tlsDir} {
			if err := os.MkdirAll(d, 0o700); err != nil {
				t.Fatal(err)
			}
		}
		// The unit's credentials: the cluster key is the one it loads.
		for cred, src := range unit.creds {
			if filepath.Base(src) != "cluster.key" {
				t.Fatalf("%s loads the credential %s from %s, which the lab does not know", labUnitFile, cred, src)
			}
			if err := os.WriteFile(filepath.Join(creds, cred), keyBytes, 0o600); err != nil {
				t.Fatal(err)
			}
		}
		certFile, keyFile := filepath.Join(tlsDir, "fullchain.pem"), filepath.Join(tlsDir, "privkey.pem")
		if err := labLeaf(certFile, keyFile, host, name); err != nil {
			t.Fatal(err)
		}
		zone := spec.region + "-a"
		if i >= len(labNodes)/2 {
			zone = spec.region + "-b"
		}
		conf, err := labConfig(example, map[string]string{
			"node": spec.id, "region": spec.region, "zone": zone, "advertise": name,
			"data": filepath.Join(nodeDir, "data"), "tls-cert": certFile, "tls-key": keyFile,
		})
		if err != nil {
			t.Fatalf("%s: %v", labConfigFile, err)
		}
		confFile := filepath.Join(nodeDir, "parley.yaml")
		if err := os.WriteFile(confFile, conf, 0o600); err != nil {
			t.Fatal(err)
		}
		argv, err := unit.command(parleyBin, confFile, creds)
		if err != nil {
			t.Fatalf("%s: %v", labUnitFile, err)
		}
		addr := net.JoinHostPort(host, httpPort)
		nd, err := localcluster.StartNode(ctx, localcluster.NodeConfig{
			Command: argv, Wrap: nl.Wrap(i), ID: spec.id, Addr: addr, URL: "https://" + addr,
			DataDir: filepath.Join(nodeDir, "data"), LogPath: filepath.Join(dir, spec.id+".log"),
			Link: net.JoinHostPort(host, linkPort), Region: spec.region,
		})
		if nd != nil {
			cl.Nodes = append(cl.Nodes, nd)
			lb.nodes = append(lb.nodes, &nodeProc{nd})
			lb.raft = append(lb.raft, nd.Link)
			lb.gossip = append(lb.gossip, net.JoinHostPort(host, port("gossip-addr")))
		}
		if err != nil {
			t.Fatalf("starting %s as %s: %v", spec.id, strings.Join(argv, " "), err)
		}
		if i == 0 {
			t.Logf("%s runs: %s", spec.id, strings.Join(argv, " "))
		}
	}
	if err := cl.WaitAlive(ctx, 90*time.Second); err != nil {
		t.Fatal(err)
	}
	if err := cl.WaitVoters(ctx, labVoters, 90*time.Second); err != nil {
		t.Fatalf("every node sees %d voters: %v", labVoters, err)
	}
	return lb
}

// runIn runs a command in node i's namespace.
func runIn(nl *localcluster.NetLab, i int, args ...string) error {
	out, err := exec.Command("ip", append([]string{"netns", "exec", nl.NS(i)}, args...)...).CombinedOutput()
	if err != nil {
		return fmt.Errorf("%s in %s: %w: %s", strings.Join(args, " "), nl.NS(i), err, out)
	}
	return nil
}

// stop ends the nodes, the delayers and the namespaces, once.
func (lb *lab) stop() {
	lb.stopped.Do(func() {
		if lb.testCluster != nil {
			lb.cl.Stop()
		}
		for _, d := range lb.delayers {
			_ = d.Close()
		}
		_ = lb.net.Close()
	})
}

// region is the indices of the nodes of region r.
func (lb *lab) region(r string) []int {
	var out []int
	for i, nd := range labNodes {
		if nd.region == r {
			out = append(out, i)
		}
	}
	return out
}

// rtt measures n round trips of one byte over TCP from node a's host to an
// echo server on node b's host; it returns them sorted.
func (lb *lab) rtt(t *testing.T, a, b, n int) []time.Duration {
	t.Helper()
	var ln net.Listener
	if err := lb.net.Do(b, func() (err error) {
		ln, err = net.Listen("tcp", net.JoinHostPort(lb.net.Host(b), "0"))
		return err
	}); err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	go func() {
		c, err := ln.Accept()
		if err != nil {
			return
		}
		defer c.Close()
		io.Copy(c, c)
	}()
	var c net.Conn
	if err := lb.net.Do(a, func() (err error) {
		c, err = net.DialTimeout("tcp", ln.Addr().String(), 10*time.Second)
		return err
	}); err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(30 * time.Second))
	var out []time.Duration
	buf := make([]byte, 1)
	for range n {
		start := time.Now()
		if _, err := c.Write([]byte{'x'}); err != nil {
			t.Fatal(err)
		}
		if _, err := io.ReadFull(c, buf); err != nil {
			t.Fatal(err)
		}
		out = append(out, time.Since(start))
	}
	slices.Sort(out)
	return out
}

// checkTLS: every node's client listener serves HTTPS with its lab
// certificate (for its own address and name) and answers plain HTTP with
// no page; its node link speaks TLS 1.3 and answers no request without a
// client certificate of the cluster's CA.
func (lb *lab) checkTLS(t *testing.T) {
	t.Helper()
	for i, nd := range lb.nodes {
		resp, err := http.Get(nd.URL + "/healthz")
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.TLS == nil || len(resp.TLS.PeerCertificates) == 0 {
			t.Fatalf("%s: no TLS", nd.URL)
		}
		leaf := resp.TLS.PeerCertificates[0]
		if leaf.Issuer.CommonName != labCACert.Subject.CommonName || leaf.VerifyHostname(lb.names[i]) != nil || leaf.VerifyHostname(lb.net.Host(i)) != nil {
			t.Errorf("%s serves a certificate of %q for %v %v", nd.URL, leaf.Issuer.CommonName, leaf.DNSNames, leaf.IPAddresses)
		}
		if plain, err := http.Get("http://" + nd.Addr + "/healthz"); err == nil {
			plain.Body.Close()
			if plain.StatusCode == http.StatusOK {
				t.Errorf("%s answered plain HTTP", nd.Addr)
			}
		}
		// The node link: a handshake without a client certificate gets
		// TLS 1.3, then no answer to a request (the server's alert).
		c, err := tls.DialWithDialer(&net.Dialer{Timeout: 5 * time.Second}, "tcp", nd.Link, &tls.Config{InsecureSkipVerify: true, NextProtos: []string{"parley-http/1"}})
		if err != nil {
			t.Logf("%s: the node link refused a handshake without a client certificate: %v", nd.Link, err)
			continue
		}
		c.SetDeadline(time.Now().Add(5 * time.Second))
		if v := c.ConnectionState().Version; v != tls.VersionTLS13 {
			t.Errorf("%s: the node link speaks TLS version %x", nd.Link, v)
		}
		if issuer := c.ConnectionState().PeerCertificates[0].Issuer.CommonName; issuer == labCACert.Subject.CommonName {
			t.Errorf("%s: the node link serves the client certificate", nd.Link)
		}
		fmt.Fprintf(c, "GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")
		if line, err := bufio.NewReader(c).ReadString('\n'); err == nil {
			t.Errorf("%s: the node link answered a client without a certificate: %q", nd.Link, line)
		}
		c.Close()
	}
}

// waitReplicas waits until each replica of conv (by placement over every
// node of the lab, in region when pinned) holds n messages, with the same
// state and the same vector; it returns the replicas' indices.
func (lb *lab) waitReplicas(t *testing.T, ws, conv, region string, n int, within time.Duration) []int {
	t.Helper()
	var members []membership.Member
	for _, nd := range labNodes {
		members = append(members, membership.Member{ID: nd.id, Region: nd.region})
	}
	var idx []int
	for _, m := range membership.Replicas(members, conv, region, 3) {
		for i, nd := range labNodes {
			if nd.id == m.ID {
				idx = append(idx, i)
			}
		}
	}
	eventually.Holds(t, within, fmt.Sprintf("the replicas of %s/%s converge on %d messages", ws, conv, n), func() error {
		var held []string
		var first *convDigest
		ok := true
		for _, i := range idx {
			var d struct {
				Conversations map[string]convDigest `json:"conversations"`
			}
			if st, code := api(lb.nodes[i], "GET", "/v1/admin/workspaces/"+ws+"/digest", lb.root, nil, &d); st != 200 {
				return fmt.Errorf("%s: digest: %d %s", labNodes[i].id, st, code)
			}
			c := d.Conversations[conv]
			held = append(held, fmt.Sprintf("%s: %d messages, %s %v", labNodes[i].id, c.Messages, c.State, c.Vector))
			if first == nil {
				first = &c
			}
			if c.Messages != n || c.State != first.State || replicationVectorString(c.Vector) != replicationVectorString(first.Vector) {
				ok = false
			}
		}
		if !ok {
			return errors.New(strings.Join(held, "; "))
		}
		return nil
	})
	return idx
}

// TestLab runs the chaos and residency checks on the lab: writers in each
// region (visitors writing through their region's nodes, resending what is
// not acknowledged), a node SIGKILLed and restarted, the leader's region
// cut off and healed, with writes on both sides; then each conversation's
// replicas hold every acknowledged message once, with identical digests;
// and a workspace pinned to eu, written to through us and ap nodes
// (relayed into eu), has its canaries in the eu nodes' files only: no
// byte of them in any file or log of the us and ap nodes.
func TestLab(t *testing.T) {
	began := time.Now()
	lb := startLab(t, labSpec{delay: 40 * time.Millisecond, loss: 0.01})
	t.Logf("lab of %d nodes up in %s (subnet %s0/24)", len(labNodes), time.Since(began).Round(time.Millisecond), strings.TrimSuffix(lb.net.Host(0), "1"))
	phase := time.Now()
	lap := func(what string) {
		t.Logf("%s: %s", what, time.Since(phase).Round(time.Millisecond))
		phase = time.Now()
	}
	lb.checkTLS(t)
	for _, p := range []struct {
		what string
		a, b int
	}{{"eu-0 to us-0 (between regions)", 0, 1}, {"eu-0 to ap-0 (between regions)", 0, 2}, {"eu-0 to eu-1 (within a region)", 0, 3}} {
		d := lb.rtt(t, p.a, p.b, 21)
		t.Logf("TCP echo RTT %s: median %s, min %s, max %s (21 round trips)", p.what,
			d[len(d)/2].Round(10*time.Microsecond), d[0].Round(10*time.Microsecond), d[len(d)-1].Round(10*time.Microsecond))
	}
	lap("TLS and RTT checks")

	ctx := testCtx(t, 4*time.Minute)
	lb.createWorkspace(t, map[string]any{"id": "acme", "name": "Acme", "plan": "team"})
	lb.createWorkspace(t, map[string]any{"id": "euonly", "name": "EU only", "region": "eu", "plan": "team"})
	regions := []string{"eu", "us", "ap"}
	writers := map[string]*visitorWriter{}
	for _, r := range regions {
		writers[r] = newVisitorWriter(t, ctx, "acme", "from a visitor in "+r)
		writers[r].write(lb.nodes[lb.region(r)[0]], "m-"+r+"-a", 5)
	}
	// The pinned workspace's canaries, written through us and ap nodes:
	// relayed into eu.
	canaryConvs := writeCanaries(t, ctx, lb.nodes[lb.region("us")[0]], "euonly", 2)
	pinned := newVisitorWriter(t, ctx, "euonly", fmt.Sprintf("my card is %s, write to %s", canaryCard, canaryEmail))
	pinned.write(lb.nodes[lb.region("ap")[0]], "m-canary-a", 3)
	lap("writes in every region")

	// kill -9 eu-1: eu keeps one replica of the pinned workspace.
	victim := lb.region("eu")[1]
	lb.nodes[victim].Kill9(t)
	for _, r := range regions {
		writers[r].write(lb.nodes[lb.region(r)[0]], "m-"+r+"-b", 5)
	}
	pinned.write(lb.nodes[lb.region("us")[1]], "m-canary-b", 3)
	lb.nodes[victim].Restart(t)
	for _, nd := range lb.nodes {
		lb.waitAlive(t, nd, len(labNodes), 60*time.Second)
	}
	lap(fmt.Sprintf("%s killed with SIGKILL, written around, restarted", labNodes[victim].id))

	// Cut the leader's region off; both sides take writes.
	leader := lb.leader(t)
	cutRegion := leader.Region
	heal, err := lb.net.Cut(lb.region(cutRegion))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { heal() })
	for _, r := range regions {
		writers[r].write(lb.nodes[lb.region(r)[0]], "m-"+r+"-c", 5)
	}
	if err := heal(); err != nil {
		t.Fatal(err)
	}
	healed := time.Now()
	for _, nd := range lb.nodes {
		lb.waitAlive(t, nd, len(labNodes), 60*time.Second)
	}
	if err := lb.cl.WaitVoters(ctx, labVoters, 60*time.Second); err != nil {
		t.Fatal(err)
	}
	lap(fmt.Sprintf("region %s (the leader %s's) cut off, written on both sides, healed", cutRegion, leader.ID))

	// After the heal, through the same nodes: a visitor's first send
	// through a node that holds nothing of its conversation yet (outside
	// its placement, before anti-entropy brings it) is refused not_found,
	// which the widget takes as the conversation gone (seen in the lab;
	// reported, not fixed here).
	for _, r := range regions {
		writers[r].write(lb.nodes[lb.region(r)[0]], "m-"+r+"-d", 5)
	}
	pinned.write(lb.nodes[lb.region("ap")[1]], "m-canary-c", 3)
	for _, r := range regions {
		w := writers[r]
		idx := lb.waitReplicas(t, "acme", w.conv, "", len(w.acked), 60*time.Second)
		t.Logf("the visitor in %s: %d messages acknowledged (%d sends answered unavailable and resent), on replicas %v",
			r, len(w.acked), w.unavailable, idx)
	}
	lb.waitReplicas(t, "euonly", pinned.conv, "eu", len(pinned.acked), 60*time.Second)
	for _, c := range canaryConvs {
		lb.waitReplicas(t, "euonly", c, "eu", 1, 60*time.Second)
	}
	lap(fmt.Sprintf("every replica converged (%s after the heal)", time.Since(healed).Round(time.Millisecond)))

	// Residency: the pinned workspace's canaries are in the eu nodes'
	// files (message IDs are stored as keys, not sealed: the positive
	// check of the scan) and in no file or log of any other node.
	var eu, others []*nodeProc
	for i, nd := range lb.nodes {
		if labNodes[i].region == "eu" {
			eu = append(eu, nd)
		} else {
			others = append(others, nd)
		}
	}
	raw := append([]string{"m-canary-", pinned.conv}, canaryConvs...)
	for _, nd := range eu {
		if hits := scanFiles(t, []*nodeProc{nd}, []string{"m-canary-a", "m-canary-b", "m-canary-c", pinned.conv}); len(hits) < 4 {
			t.Errorf("the scan finds %d of the pinned workspace's 4 raw canaries in %s's files: %v", len(hits), nd.ID, hits)
		}
	}
	for _, h := range scanFiles(t, others, append(slices.Clone(canaries), raw...)) {
		t.Errorf("outside eu: %s", h)
	}
	for _, nd := range others {
		filepath.WalkDir(nd.DataDir, func(p string, d os.DirEntry, err error) error {
			if err != nil || d.IsDir() || filepath.Base(p) == "raft.db" || strings.Contains(p, "snapshots") {
				return err // the control plane's log names every workspace, by design
			}
			if b, _ := os.ReadFile(p); bytes.Contains(b, []byte("euonly")) {
				t.Errorf("%s holds data of the eu workspace", p)
			}
			return nil
		})
		logs := nd.Logs()
		for _, c := range append(slices.Clone(canaries), raw...) {
			if strings.Contains(logs, c) {
				t.Errorf("the log of %s mentions %q", nd.ID, c)
			}
		}
	}
	lap("residency scans")

	for i, d := range lb.delayers {
		s := d.Stats()
		t.Logf("%s: %d packets from other regions delayed %s, %d dropped", labNodes[i].id, s.Delayed, 40*time.Millisecond, s.Dropped)
		if s.Delayed == 0 {
			t.Errorf("%s: no packet from another region went through the delayer: the queue rules do not match", labNodes[i].id)
		}
	}
	t.Logf("lab run: %s", time.Since(began).Round(time.Millisecond))
}
