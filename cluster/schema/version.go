package schema

import "fmt"

// Protocol versions. Nodes of different releases run side by side during
// a rolling upgrade; what they exchange (the command table's types, the
// node link's protocols, gossip's metadata) is versioned by one number,
// raised by one in every release that adds a command type or changes
// anything else nodes exchange.
//
//   - 1: the release of commit f1a04e3 (e2e/testdata/previous-release),
//     command types 1 to 35. Its nodes advertise no version: a node that
//     advertises none runs 1.
//   - 2: nodes advertise their version (gossip metadata, node link
//     certificates) and refuse commands newer than the lowest version of
//     the cluster's members.
const (
	// ProtocolVersion is the version this build speaks. It is at least the
	// since of every command in the table (a test checks).
	ProtocolVersion = 2
	// MinProtocolVersion is the oldest version this build works beside in
	// one cluster: a node link with an older node is refused, both ends
	// logging why. Raised only in a release that gives up upgrading
	// from a release older than the previous one.
	MinProtocolVersion = 1
)

// Since is the protocol version that introduced command type t (its row
// of the table), 0 for a type this build does not know.
func Since(t CommandType) int {
	return commands[t&^SkippableFlag].since
}

// RequiredVersion is the lowest protocol version every node must run for
// cmd to be appended to the log: the highest since of cmd and of the
// command an envelope (Request, Audited) carries.
func RequiredVersion(cmd Command) int {
	v := 0
	for ; cmd != nil; cmd = wrapped(cmd) {
		v = max(v, Since(cmd.Type()))
	}
	return v
}

// Innermost is the command cmd carries inside its envelopes (Request,
// Audited), or cmd itself.
func Innermost(cmd Command) Command {
	for w := wrapped(cmd); w != nil; w = wrapped(cmd) {
		cmd = w
	}
	return cmd
}

// wrapped is the command an envelope carries, nil for any other command.
func wrapped(cmd Command) Command {
	switch c := cmd.(type) {
	case Request:
		return c.Cmd
	case *Request:
		return c.Cmd
	case Audited:
		return c.Cmd
	case *Audited:
		return c.Cmd
	}
	return nil
}

// Compatible says whether nodes speaking versions a (accepting peers from
// minA on) and b (from minB on) may work together: each at least the
// other's minimum. A zero version is 1 (a node of the first release
// advertises none), a zero minimum is the version itself.
func Compatible(a, minA, b, minB int) error {
	a, minA = normVersion(a, minA)
	b, minB = normVersion(b, minB)
	switch {
	case b < minA:
		return fmt.Errorf("the peer speaks protocol version %d, this node (version %d) needs %d or later: upgrade the peer", b, a, minA)
	case a < minB:
		return fmt.Errorf("the peer (version %d) needs protocol version %d or later, this node speaks %d: upgrade this node", b, minB, a)
	}
	return nil
}

func normVersion(v, minV int) (int, int) {
	if v <= 0 {
		v = 1
	}
	if minV <= 0 || minV > v {
		minV = v
	}
	return v, minV
}
