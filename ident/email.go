package ident

import (
	"net/mail"
	"strings"
)

// Messages a visitor's widget sends for e-mail (package email,
// docs/protocol.md): a message whose ID starts with EmailMessagePrefix
// carries, as its body, the address the visitor asked to be mailed at
// (the latest one of the conversation's owner counts); one whose ID
// starts with TranscriptMessagePrefix asks for the conversation's
// transcript by mail.
const (
	EmailMessagePrefix      = "email-"
	TranscriptMessagePrefix = "transcript-"
)

// EmailAddress says whether s is a bare e-mail address (no display name,
// no comment) of at most 254 bytes with a local part and a domain.
func EmailAddress(s string) bool {
	if len(s) > 254 || strings.ContainsAny(s, " \t\r\n<>") {
		return false
	}
	a, err := mail.ParseAddress(s)
	if err != nil || a.Address != s || a.Name != "" {
		return false
	}
	at := strings.LastIndexByte(s, '@')
	return at > 0 && at < len(s)-1
}
