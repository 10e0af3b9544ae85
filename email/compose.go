package email

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"mime"
	"mime/quotedprintable"
	"net/url"
	"strings"
	"time"

	"parley/crdt"
)

// OpenFragment is the fragment of a mail's link back to the conversation:
// the widget on the linked page opens itself when the address has it.
const OpenFragment = "parley-open"

// Link is the address a mail links back to the conversation with: the
// site URL with OpenFragment; "" without a site URL.
func Link(site, conv string) string {
	if site == "" {
		return ""
	}
	u, err := url.Parse(site)
	if err != nil {
		return ""
	}
	u.Fragment = OpenFragment + "=" + conv
	return u.String()
}

// mail is one message to compose.
type mail struct {
	from, to, subject string
	// id makes the Message-ID: the same batch composed again (by another
	// node after a takeover) has the same one, so a receiver may drop the
	// second copy.
	id    string
	intro string
	lines []crdt.Message
	link  string
	date  time.Time
}

// compose renders m as an RFC 5322 message: UTF-8 text, quoted-printable,
// CRLF line ends.
func compose(m mail) []byte {
	var b bytes.Buffer
	h := func(k, v string) { fmt.Fprintf(&b, "%s: %s\r\n", k, v) }
	h("From", m.from)
	h("To", m.to)
	h("Subject", mime.QEncoding.Encode("utf-8", m.subject))
	h("Date", m.date.UTC().Format(time.RFC1123Z))
	sum := sha256.Sum256([]byte(m.id))
	h("Message-ID", "<"+hex.EncodeToString(sum[:16])+"@parley.invalid>")
	h("MIME-Version", "1.0")
	h("Content-Type", `text/plain; charset="utf-8"`)
	h("Content-Transfer-Encoding", "quoted-printable")
	h("Auto-Submitted", "auto-generated")
	b.WriteString("\r\n")
	var text strings.Builder
	text.WriteString(m.intro + "\n\n")
	for _, msg := range m.lines {
		name := msg.Name
		if name == "" {
			name = string(msg.Role)
		}
		fmt.Fprintf(&text, "%s (%s):\n%s\n\n", name, time.UnixMilli(msg.Created.Wall).UTC().Format("2006-01-02 15:04 MST"), msg.Body)
	}
	if m.link != "" {
		fmt.Fprintf(&text, "Continue the conversation: %s\n", m.link)
	}
	w := quotedprintable.NewWriter(&b)
	w.Write([]byte(strings.ReplaceAll(text.String(), "\n", "\r\n")))
	w.Close()
	return b.Bytes()
}
