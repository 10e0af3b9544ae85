package webhook

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"net/netip"
	"syscall"
	"time"
)

// ErrForbiddenAddress: an endpoint's host resolved to an address the node
// may not send to (private, loopback, link-local...) and the operator did
// not allow them.
var ErrForbiddenAddress = errors.New("webhook: address not allowed")

// forbiddenPrefixes are ranges besides those netip classifies: shared
// address space (carrier-grade NAT), "this network", IETF protocol
// assignments, benchmarking.
var forbiddenPrefixes = []netip.Prefix{
	netip.MustParsePrefix("100.64.0.0/10"),
	netip.MustParsePrefix("0.0.0.0/8"),
	netip.MustParsePrefix("192.0.0.0/24"),
	netip.MustParsePrefix("198.18.0.0/15"),
	netip.MustParsePrefix("64:ff9b:1::/48"),
}

// Forbidden says whether an address is one a webhook may not reach unless
// the operator allows private addresses: loopback, private, link-local,
// multicast, unspecified and the ranges above.
func Forbidden(ip netip.Addr) bool {
	ip = ip.Unmap()
	if ip.IsLoopback() || ip.IsPrivate() || ip.IsLinkLocalUnicast() || ip.IsLinkLocalMulticast() ||
		ip.IsInterfaceLocalMulticast() || ip.IsMulticast() || ip.IsUnspecified() {
		return true
	}
	for _, p := range forbiddenPrefixes {
		if p.Contains(ip) {
			return true
		}
	}
	return false
}

// checkDial is a net.Dialer's Control: it sees the address each
// connection is about to be made to, after name resolution, so a name
// that resolves (or is rebound) to a forbidden address is refused too.
func checkDial(allowPrivate bool) func(network, address string, c syscall.RawConn) error {
	return func(network, address string, _ syscall.RawConn) error {
		ap, err := netip.ParseAddrPort(address)
		if err != nil {
			return fmt.Errorf("%w: %s", ErrForbiddenAddress, address)
		}
		if !allowPrivate && Forbidden(ap.Addr()) {
			return fmt.Errorf("%w: %s (a private, loopback or link-local address; -webhook-allow-private allows them)", ErrForbiddenAddress, ap.Addr())
		}
		return nil
	}
}

// newClient is the HTTP client of deliveries: no proxy from the
// environment (a proxy would dial for it, past the check), no redirects
// followed (a 3xx is a failure), each request within timeout.
func newClient(timeout time.Duration, allowPrivate bool) *http.Client {
	d := &net.Dialer{Timeout: timeout, Control: checkDial(allowPrivate)}
	tr := &http.Transport{
		Proxy: nil,
		DialContext: func(ctx context.Context, network, addr string) (net.Conn, error) {
			return d.DialContext(ctx, network, addr)
		},
		TLSHandshakeTimeout:   timeout,
		ResponseHeaderTimeout: timeout,
		MaxIdleConnsPerHost:   8,
		IdleConnTimeout:       90 * time.Second,
		ForceAttemptHTTP2:     true,
	}
	return &http.Client{
		Transport:     tr,
		Timeout:       timeout,
		CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse },
	}
}
