package localcluster

import (
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"
)

func newTestLab(t *testing.T, n int) *NetLab {
	t.Helper()
	if err := NetLabAvailable(); err != nil {
		t.Skip(err)
	}
	l, err := NewNetLab(n)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = l.Close() })
	return l
}

// TestNetLabDoAndHosts: a listener opened in one namespace (Do) is reached
// from another by its host's address; SetHosts names the hosts inside the
// namespaces.
func TestNetLabDoAndHosts(t *testing.T) {
	l := newTestLab(t, 2)
	var ln net.Listener
	if err := l.Do(0, func() (err error) {
		ln, err = net.Listen("tcp", net.JoinHostPort(l.Host(0), "0"))
		return err
	}); err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	go func() {
		if c, err := ln.Accept(); err == nil {
			c.Write([]byte("hello"))
			c.Close()
		}
	}()
	var c net.Conn
	if err := l.Do(1, func() (err error) {
		c, err = net.Dial("tcp", ln.Addr().String())
		return err
	}); err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	b := make([]byte, 5)
	if _, err := c.Read(b); err != nil || string(b) != "hello" {
		t.Fatalf("read %q: %v", b, err)
	}
	if got := c.LocalAddr().(*net.TCPAddr).IP.String(); got != l.Host(1) {
		t.Errorf("the dial from node 1 left from %s, want %s", got, l.Host(1))
	}
	if err := l.SetHosts([]string{"a.lab.internal", "b.lab.internal"}); err != nil {
		t.Fatal(err)
	}
	out, err := exec.Command("ip", "netns", "exec", l.NS(0), "getent", "hosts", "b.lab.internal").CombinedOutput()
	if err != nil || !strings.HasPrefix(string(out), l.Host(1)+" ") {
		t.Errorf("b.lab.internal in node 0's namespace: %q %v", out, err)
	}
}

// TestSweepRemovesLabsOfGoneOwners: a lab whose owner process is gone is
// removed by the sweep, with a process still running in it; a lab whose
// owner runs is left alone.
func TestSweepRemovesLabsOfGoneOwners(t *testing.T) {
	live := newTestLab(t, 1)
	stale := newTestLab(t, 2)
	gone := exec.Command("true")
	if err := gone.Run(); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(OwnerDir, stale.id), []byte(strconv.Itoa(gone.Process.Pid)+"\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	left := exec.Command("ip", "netns", "exec", stale.NS(1), "sleep", "60")
	if err := left.Start(); err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- left.Wait() }()
	swept, err := SweepNetLabs()
	if err != nil {
		t.Fatal(err)
	}
	if !slices.Contains(swept, stale.id) || slices.Contains(swept, live.id) {
		t.Fatalf("swept %v: want %s and not %s", swept, stale.id, live.id)
	}
	if err := <-done; err == nil {
		t.Error("the process left in the stale lab still ran")
	}
	out, _ := exec.Command("ip", "netns", "list").Output()
	if strings.Contains(string(out), "pns"+stale.id+"-") || !strings.Contains(string(out), live.NS(0)) {
		t.Errorf("namespaces after the sweep:\n%s", out)
	}
	if _, err := os.Stat("/sys/class/net/" + stale.bridge()); err == nil {
		t.Error("the stale lab's bridge is still there")
	}
	if _, err := os.Stat(filepath.Join(OwnerDir, stale.id)); err == nil {
		t.Error("the stale lab's owner file is still there")
	}
}
