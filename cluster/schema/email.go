package schema

import (
	"net"
	"strings"
	"time"

	"parley/ident"
)

// E-mail (package email, docs/api.md): each workspace sends through its
// own SMTP server. The control plane holds the server's settings, the
// password or API key sealed under the master key bound to the workspace
// (as webhook secrets), and per conversation how far its replies were
// mailed and how the last mail went. It never holds an e-mail address: a
// visitor's address is personal data kept with the conversation in the
// store.

// TLS modes of an SMTP server.
const (
	// TLSImplicit: TLS from the first byte (SMTPS, usually port 465).
	TLSImplicit = "implicit"
	// TLSStartTLS: plain SMTP that must upgrade with STARTTLS before
	// anything else is sent (usually port 587); a server without it fails.
	TLSStartTLS = "starttls"
	// TLSNone: no encryption; the sending node refuses it unless its
	// -email-allow-plaintext flag is set (loopback tests).
	TLSNone = "none"
)

// Limits of the e-mail settings.
const (
	MaxSMTPHost  = 253
	MaxSMTPUser  = 256
	MaxSiteURL   = 2048
	MaxMailError = 512
)

// EmailSettings are a workspace's SMTP settings as the API shows them:
// never the password.
type EmailSettings struct {
	Workspace string `json:"workspace"`
	Host      string `json:"host"`
	Port      int    `json:"port"`
	TLS       string `json:"tls"`
	User      string `json:"user,omitempty"`
	From      string `json:"from"`
	// SiteURL is the page a mail links back to when the conversation's
	// own page is unknown; the link opens the widget on it.
	SiteURL string `json:"site_url,omitempty"`
	// PasswordSet says a password or API key is held (sealed).
	PasswordSet bool      `json:"password_set"`
	Created     time.Time `json:"created"`
	Updated     time.Time `json:"updated"`
}

// Validate checks the settings' fields.
func (s EmailSettings) Validate() error {
	errs := []error{CheckID("workspace id", s.Workspace), CheckSMTPHost(s.Host), checkTime("updated", s.Updated), checkTime("created", s.Created)}
	if s.Port < 1 || s.Port > 65535 {
		errs = append(errs, invalidf("smtp port %d: want 1 to 65535", s.Port))
	}
	if s.TLS != TLSImplicit && s.TLS != TLSStartTLS && s.TLS != TLSNone {
		errs = append(errs, invalidf("tls %q: want implicit, starttls or none", s.TLS))
	}
	if len(s.User) > MaxSMTPUser || strings.ContainsAny(s.User, "\r\n\x00") {
		errs = append(errs, invalidf("smtp user of %d bytes: want at most %d, on one line", len(s.User), MaxSMTPUser))
	}
	errs = append(errs, CheckEmailAddress(s.From))
	if s.SiteURL != "" {
		errs = append(errs, CheckSiteURL(s.SiteURL))
	}
	return firstErr(errs...)
}

// CheckSMTPHost checks an SMTP server's host: a DNS name or an IP address.
func CheckSMTPHost(h string) error {
	if h == "" || len(h) > MaxSMTPHost {
		return invalidf("smtp host of %d bytes: want 1 to %d", len(h), MaxSMTPHost)
	}
	if net.ParseIP(h) != nil {
		return nil
	}
	for _, label := range strings.Split(h, ".") {
		if label == "" || len(label) > 63 || strings.Trim(label, "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789-") != "" {
			return invalidf("smtp host %q: want a host name or an IP address", h)
		}
	}
	return nil
}

// CheckSiteURL checks a site URL: absolute http or https.
func CheckSiteURL(s string) error {
	if err := CheckWebhookURL(s); err != nil || len(s) > MaxSiteURL {
		return invalidf("site url %q: want http(s)://host[:port]/path, without user or fragment", s)
	}
	return nil
}

// CheckEmailAddress checks an e-mail address: a bare address (no display
// name), at most 254 bytes, a dot in its domain or a bracketed literal.
func CheckEmailAddress(e string) error {
	if !ident.EmailAddress(e) {
		return invalidf("e-mail address %q: want a bare address such as name@example.com", e)
	}
	return nil
}

// SetEmailSettings sets a workspace's SMTP settings. Sealed is the
// password or API key sealed by the proposer; nil keeps the one held (a
// change of host or sender without a new secret), Clear drops it.
type SetEmailSettings struct {
	Settings EmailSettings `json:"settings"`
	Sealed   *Sealed       `json:"sealed,omitempty"`
	Clear    bool          `json:"clear,omitempty"`
}

func (SetEmailSettings) Type() CommandType { return TypeSetEmailSettings }

func (c SetEmailSettings) Validate() error {
	errs := []error{c.Settings.Validate()}
	if c.Sealed != nil {
		errs = append(errs, c.Sealed.validate())
		if c.Clear {
			errs = append(errs, invalidf("a new secret and clear together"))
		}
	}
	return firstErr(errs...)
}

// DeleteEmailSettings removes a workspace's SMTP settings with their
// secret: no mail is sent from then on.
type DeleteEmailSettings struct {
	Workspace string `json:"workspace"`
}

func (DeleteEmailSettings) Type() CommandType { return TypeDeleteEmailSettings }

func (c DeleteEmailSettings) Validate() error { return CheckID("workspace id", c.Workspace) }

// Mail kinds of a conversation.
const (
	MailReplies    = "replies"
	MailTranscript = "transcript"
)

// Mail delivery states.
const (
	MailSent     = "sent"
	MailRetrying = "retrying" // a temporary error: retried with back-off
	MailFailed   = "failed"   // a permanent error: not retried
)

// MailState is how a conversation's mails went: the cursor of the replies
// mailed (a version vector over the conversation's event stamps, the same
// on every replica) and the last attempt's outcome, for agents to see.
type MailState struct {
	Conversation string `json:"conversation"`
	// Mailed covers the events whose replies were mailed (or given up).
	Mailed map[string]uint64 `json:"mailed,omitempty"`
	// Transcripts covers the transcript requests answered.
	Transcripts map[string]uint64 `json:"transcripts,omitempty"`
	// TranscriptAt is when the last transcript was sent.
	TranscriptAt time.Time `json:"transcript_at,omitzero"`
	Kind         string    `json:"kind"`
	Status       string    `json:"status"`
	Error        string    `json:"error,omitempty"`
	Attempts     int       `json:"attempts,omitempty"`
	At           time.Time `json:"at"`
	// Sent and Failed count the conversation's mails sent and given up.
	Sent   int `json:"sent,omitempty"`
	Failed int `json:"failed,omitempty"`
}

// RecordMail records a mail's outcome for a conversation: Status sent or
// failed moves the cursor of its kind to Through (the mail is done);
// retrying records the error only. Through never moves back.
type RecordMail struct {
	Workspace    string            `json:"workspace"`
	Conversation string            `json:"conversation"`
	Kind         string            `json:"kind"`
	Status       string            `json:"status"`
	Through      map[string]uint64 `json:"through,omitempty"`
	Error        string            `json:"error,omitempty"`
	Attempts     int               `json:"attempts,omitempty"`
	At           time.Time         `json:"at"`
}

func (RecordMail) Type() CommandType { return TypeRecordMail }

func (c RecordMail) Validate() error {
	errs := []error{CheckID("workspace id", c.Workspace), checkConversation(c.Conversation), checkTime("at", c.At)}
	if c.Kind != MailReplies && c.Kind != MailTranscript {
		errs = append(errs, invalidf("mail kind %q: want replies or transcript", c.Kind))
	}
	if c.Status != MailSent && c.Status != MailRetrying && c.Status != MailFailed {
		errs = append(errs, invalidf("mail status %q: want sent, retrying or failed", c.Status))
	}
	if len(c.Error) > MaxMailError || c.Attempts < 0 || len(c.Through) > 256 {
		errs = append(errs, invalidf("mail record: error, attempts or cursor out of range"))
	}
	if strings.Contains(c.Error, "@") {
		errs = append(errs, invalidf("mail error holds an @: redact the addresses an SMTP answer quotes"))
	}
	return firstErr(errs...)
}
