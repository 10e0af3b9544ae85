// Package ident holds the words every layer of Parley shares: the grammars
// of its identifiers and the roles of a conversation's participants. It
// imports nothing of Parley, so the gateway, the store, the control plane,
// the node and the tools check an identifier by one rule, written once.
//
// The grammars are ASCII only and anchored at both ends: a validator says
// whether the whole string is one.
package ident

// ValidID says whether s is an ID of the control plane's records and of
// nodes: workspaces, operators, brands, nodes and peers. 1 to 64 of
// a-z 0-9 _ - ([a-z0-9_-]{1,64}).
func ValidID(s string) bool { return len(s) >= 1 && len(s) <= 64 && all(s, idByte) }

// ValidOrigin says whether s names an origin of conversation events: a
// node ID, or after an unclean stop the node ID, "~" and the epoch that
// followed (store's origin name). 1 to 64 of a-z 0-9 _ - ~
// ([a-z0-9_~-]{1,64}); where the "~" stands is not checked.
func ValidOrigin(s string) bool {
	return len(s) >= 1 && len(s) <= 64 && all(s, func(c byte) bool { return idByte(c) || c == '~' })
}

// ValidRegion says whether s is a region or a zone: 1 to 32 of a-z 0-9 -
// ([a-z0-9-]{1,32}). Where a region is optional, the empty string (none)
// is for the caller to allow.
func ValidRegion(s string) bool {
	return len(s) >= 1 && len(s) <= 32 && all(s, func(c byte) bool { return lowerDigit(c) || c == '-' })
}

// ValidConversation says whether s is a conversation ID as a gateway mints
// it: "c_" and 24 lowercase hex digits (c_[0-9a-f]{24}). Clients and the
// HTTP API name conversations by it.
func ValidConversation(s string) bool {
	return len(s) == 2+24 && s[:2] == "c_" && all(s[2:], func(c byte) bool { return c >= '0' && c <= '9' || c >= 'a' && c <= 'f' })
}

// ValidConversationRef says whether s names a conversation in a
// control-plane record (an assignment, an erasure): 1 to 64 of
// A-Z a-z 0-9 _ - ([A-Za-z0-9_-]{1,64}). Looser than ValidConversation,
// which it includes.
func ValidConversationRef(s string) bool {
	return len(s) >= 1 && len(s) <= 64 && all(s, func(c byte) bool { return idByte(c) || c >= 'A' && c <= 'Z' })
}

func lowerDigit(c byte) bool { return c >= 'a' && c <= 'z' || c >= '0' && c <= '9' }

func idByte(c byte) bool { return lowerDigit(c) || c == '_' || c == '-' }

func all(s string, ok func(byte) bool) bool {
	for i := 0; i < len(s); i++ {
		if !ok(s[i]) {
			return false
		}
	}
	return true
}

// Role is what a participant of a conversation is. On the wire (a client's
// hello, messages, presence, typing, signals between nodes) it is the
// string itself.
type Role string

// The roles.
const (
	Visitor Role = "visitor" // a customer, through the widget
	Agent   Role = "agent"   // an operator, through the console
	// Bot is a program posting through the conversations API with an API
	// key (docs/api.md): its participant is "b:<key ID>", its name the one
	// the program chose. It never connects, so it has no presence.
	Bot Role = "bot"
)

// Valid says whether r is one of the roles a connection takes (a bot
// never connects).
func (r Role) Valid() bool { return r == Visitor || r == Agent }
