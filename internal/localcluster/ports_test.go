package localcluster

import (
	"net"
	"strconv"
	"testing"
)

// resetPorts forgets the range and the ports given, so that FreeAddr reads
// PARLEY_TEST_PORTS again.
func resetPorts() {
	ports.mu.Lock()
	ports.given, ports.err = nil, nil
	ports.mu.Unlock()
}

// FreeAddr gives ports of its range only, each once, skipping one that is
// taken; a bad range is an error.
func TestFreeAddrKeepsToItsRange(t *testing.T) {
	t.Cleanup(resetPorts)
	t.Setenv("PARLEY_TEST_PORTS", "23000-23100")
	resetPorts()
	taken, err := net.Listen("tcp", "127.0.0.1:23050")
	if err != nil {
		t.Skipf("port 23050 is in use here: %v", err)
	}
	defer taken.Close()
	seen := map[string]bool{}
	for range 100 {
		a, err := FreeAddr()
		if err != nil {
			t.Fatal(err)
		}
		_, p, _ := net.SplitHostPort(a)
		n, _ := strconv.Atoi(p)
		if n < 23000 || n > 23100 || n == 23050 || seen[a] {
			t.Fatalf("FreeAddr gave %s (given before: %v)", a, seen[a])
		}
		seen[a] = true
	}
	for _, bad := range []string{"23000", "80-2000", "23000-23010", "x-y"} {
		t.Setenv("PARLEY_TEST_PORTS", bad)
		resetPorts()
		if a, err := FreeAddr(); err == nil {
			t.Errorf("PARLEY_TEST_PORTS=%q gave %s", bad, a)
		}
	}
}
