package nfqdelay

import (
	"context"
	"io"
	"net"
	"os/exec"
	"testing"
	"time"

	"parley/internal/localcluster"
)

// TestDelayerPassesDropsAndBypasses: in a lab of two namespaces, packets
// from host 0 to host 1 are queued to host 1's delayer: with no loss they
// pass (a TCP exchange completes, every packet counted); with a loss of 1
// none does; with no delayer listening they pass undelayed (bypass).
func TestDelayerPassesDropsAndBypasses(t *testing.T) {
	if err := localcluster.NetLabAvailable(); err != nil {
		t.Skip(err)
	}
	if _, err := exec.LookPath("iptables"); err != nil {
		t.Skip(err)
	}
	l, err := localcluster.NewNetLab(2)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = l.Close() })
	if out, err := exec.Command("ip", "netns", "exec", l.NS(1), "iptables", "-w", "-A", "INPUT", "-s", l.Host(0),
		"-j", "NFQUEUE", "--queue-num", "3", "--queue-bypass").CombinedOutput(); err != nil {
		t.Fatalf("iptables: %v: %s", err, out)
	}
	var ln net.Listener
	if err := l.Do(1, func() (err error) {
		ln, err = net.Listen("tcp", net.JoinHostPort(l.Host(1), "0"))
		return err
	}); err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			go func() { io.Copy(c, c); c.Close() }()
		}
	}()
	// exchange dials host 1 from host 0 and echoes a byte, within 2 s.
	exchange := func() error {
		var c net.Conn
		if err := l.Do(0, func() (err error) {
			c, err = net.DialTimeout("tcp", ln.Addr().String(), 2*time.Second)
			return err
		}); err != nil {
			return err
		}
		defer c.Close()
		c.SetDeadline(time.Now().Add(2 * time.Second))
		if _, err := c.Write([]byte{1}); err != nil {
			return err
		}
		_, err := io.ReadFull(c, make([]byte, 1))
		return err
	}

	d, err := Start(context.Background(), Config{NetNS: l.NSPath(1), Queue: 3, Delay: 20 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	if err := exchange(); err != nil {
		t.Fatalf("through the delayer: %v", err)
	}
	if s := d.Stats(); s.Delayed < 3 || s.Dropped != 0 {
		t.Errorf("a connection and an exchange: %+v, want 3 or more packets delayed, none dropped", s)
	}
	if err := d.Close(); err != nil {
		t.Fatal(err)
	}

	lossy, err := Start(context.Background(), Config{NetNS: l.NSPath(1), Queue: 3, Loss: 1})
	if err != nil {
		t.Fatal(err)
	}
	if err := exchange(); err == nil {
		t.Error("an exchange passed a delayer that drops everything")
	}
	if s := lossy.Stats(); s.Dropped == 0 || s.Delayed != 0 {
		t.Errorf("with a loss of 1: %+v", s)
	}
	if err := lossy.Close(); err != nil {
		t.Fatal(err)
	}
	if err := exchange(); err != nil {
		t.Errorf("with no delayer listening (bypass): %v", err)
	}
}
