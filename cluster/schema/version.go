package schema

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
