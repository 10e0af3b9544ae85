package nodelink

import (
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/asn1"
	"fmt"
	"sync"
	"time"
)

// Protocol versions over the link. Each node's certificate carries the
// protocol version it speaks and the oldest it works beside (Config.Version
// and MinVersion) in a non-critical extension, which nodes of the first
// release (they issue certificates without it: version 1) ignore. After a
// handshake each end reads the other's and, when the two cannot work
// together, logs why and closes the connection: a peer too old for this
// node, or one that needs a newer version than this node speaks, is
// refused with the same clear error logged at both ends, whatever the
// protocol (Raft or HTTP).

// oidVersions names the extension: under 1.3.6.1.4.1.32473, the private
// enterprise number set aside for examples (RFC 5612), as Parley has none
// of its own; only Parley nodes read it. (x509 parses no arc above 2^31,
// so a UUID's arc under 2.25 is not an option.)
var oidVersions = asn1.ObjectIdentifier{1, 3, 6, 1, 4, 1, 32473, 7, 1}

// versions is the extension's value.
type versions struct {
	Version, Min int
}

// versionExtension is the extension for v, nil when v is zero (no
// version advertised, as the first release did).
func versionExtension(v versions) ([]pkix.Extension, error) {
	if v.Version == 0 {
		return nil, nil
	}
	der, err := asn1.Marshal(v)
	if err != nil {
		return nil, err
	}
	return []pkix.Extension{{Id: oidVersions, Value: der}}, nil
}

// peerVersions reads the versions a peer's certificate advertises: 1 and
// 1 when it advertises none.
func peerVersions(cert *x509.Certificate) (versions, error) {
	for _, e := range cert.Extensions {
		if !e.Id.Equal(oidVersions) {
			continue
		}
		var v versions
		rest, err := asn1.Unmarshal(e.Value, &v)
		if err != nil || len(rest) > 0 || v.Version < 1 || v.Min < 1 || v.Min > v.Version {
			return versions{}, fmt.Errorf("nodelink: the peer's certificate has a malformed protocol version extension")
		}
		return v, nil
	}
	return versions{Version: 1, Min: 1}, nil
}

// ErrIncompatible is the error of a link refused because the two nodes'
// protocol versions cannot work together.
type ErrIncompatible struct {
	Peer string // the peer's node ID
	// Peer's and this node's versions, and the oldest each works beside.
	PeerVersion, PeerMin, Version, Min int
}

func (e *ErrIncompatible) Error() string {
	if e.PeerVersion < e.Min {
		return fmt.Sprintf("nodelink: link with %s refused: it speaks protocol version %d, this node (version %d) needs %d or later: upgrade %s",
			e.Peer, e.PeerVersion, e.Version, e.Min, e.Peer)
	}
	return fmt.Sprintf("nodelink: link with %s refused: it (version %d) needs protocol version %d or later, this node speaks %d: upgrade this node",
		e.Peer, e.PeerVersion, e.PeerMin, e.Version)
}

// checkPeer says whether the peer of a completed handshake speaks a
// protocol version this node works beside.
func (l *Link) checkPeer(cs tls.ConnectionState) error {
	if len(cs.PeerCertificates) == 0 {
		return fmt.Errorf("nodelink: no peer certificate")
	}
	peer := cs.PeerCertificates[0]
	pv, err := peerVersions(peer)
	if err != nil {
		return err
	}
	own := l.versions()
	if pv.Version < own.Min || own.Version < pv.Min {
		return &ErrIncompatible{Peer: peer.Subject.CommonName, PeerVersion: pv.Version, PeerMin: pv.Min, Version: own.Version, Min: own.Min}
	}
	return nil
}

// versions is this node's, as its certificate says them (1 and 1 when
// Config.Version is zero).
func (l *Link) versions() versions {
	if l.cfg.Version == 0 {
		return versions{Version: 1, Min: 1}
	}
	return versions{Version: l.cfg.Version, Min: l.cfg.MinVersion}
}

// refusals logs refused links at most once a minute per peer: a peer
// retries (Raft every few milliseconds), and one line says it all.
type refusals struct {
	mu   sync.Mutex
	last map[string]time.Time
}

func (r *refusals) log(l *Link, side string, err error) {
	key := side + " " + err.Error()
	r.mu.Lock()
	if r.last == nil {
		r.last = map[string]time.Time{}
	}
	now := time.Now()
	if t, ok := r.last[key]; ok && now.Sub(t) < time.Minute {
		r.mu.Unlock()
		return
	}
	r.last[key] = now
	r.mu.Unlock()
	l.cfg.Logger.Error("nodelink: protocol versions incompatible: link refused", "side", side, "err", err)
}
