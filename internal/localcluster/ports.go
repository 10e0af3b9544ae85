package localcluster

import (
	"errors"
	"fmt"
	"math/rand/v2"
	"net"
	"os"
	"strconv"
	"strings"
	"sync"
)

// Ports for test nodes. A port taken from the kernel (":0") and given back
// is free only until the kernel hands it to the next connection of any
// process: with test processes side by side (tools/test.sh runs the e2e
// package as several), a node then found its port taken. FreeAddr picks
// instead from a range below Linux's ephemeral ports (32768 and up), which
// the kernel never hands out by itself, given per process by
// PARLEY_TEST_PORTS ("LO-HI"), so that processes run side by side use
// disjoint ranges, and never twice in one process.

// defaultPorts is the range without PARLEY_TEST_PORTS.
const defaultPorts = "10000-32767"

var ports struct {
	mu     sync.Mutex
	lo, hi int
	err    error
	given  map[int]bool
}

func portRange() (lo, hi int, err error) {
	spec := os.Getenv("PARLEY_TEST_PORTS")
	if spec == "" {
		spec = defaultPorts
	}
	a, b, ok := strings.Cut(spec, "-")
	lo, err1 := strconv.Atoi(a)
	hi, err2 := strconv.Atoi(b)
	if !ok || err1 != nil || err2 != nil || lo < 1024 || hi > 65535 || hi-lo < 100 {
		return 0, 0, fmt.Errorf("PARLEY_TEST_PORTS %q: want LO-HI, 1024 <= LO, HI <= 65535, at least 100 ports", spec)
	}
	return lo, hi, nil
}

// FreeAddr is an address on 127.0.0.1 whose port, TCP and UDP alike (gossip
// and HTTP/3 use both), was free a moment ago, from this process's range
// (PARLEY_TEST_PORTS) and never returned before by this process.
func FreeAddr() (string, error) {
	ports.mu.Lock()
	defer ports.mu.Unlock()
	if ports.given == nil {
		ports.lo, ports.hi, ports.err = portRange()
		ports.given = map[int]bool{}
	}
	if ports.err != nil {
		return "", ports.err
	}
	for range 2000 {
		p := ports.lo + rand.IntN(ports.hi-ports.lo+1)
		if ports.given[p] {
			continue
		}
		addr := net.JoinHostPort("127.0.0.1", strconv.Itoa(p))
		if !free(addr) {
			continue
		}
		ports.given[p] = true
		return addr, nil
	}
	return "", errors.New("no free port left in PARLEY_TEST_PORTS's range " + strconv.Itoa(ports.lo) + "-" + strconv.Itoa(ports.hi))
}

// free says whether addr's port can be bound for TCP and UDP now.
func free(addr string) bool {
	l, err := net.Listen("tcp", addr)
	if err != nil {
		return false
	}
	defer l.Close()
	u, err := net.ListenPacket("udp", addr)
	if err != nil {
		return false
	}
	u.Close()
	return true
}
