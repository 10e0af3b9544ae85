package email

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"net"
	"net/smtp"
	"net/textproto"
	"strconv"
	"time"

	"parley/cluster/schema"
)

// ErrPermanent marks an SMTP failure not worth retrying: a 5xx answer (an
// unknown recipient, a refused sender, failed authentication), a server
// without the STARTTLS the settings require, settings the node refuses.
// Anything else (a 4xx answer, a refused connection, a timeout) is
// temporary and retried with back-off.
var ErrPermanent = errors.New("permanent mail failure")

// Permanent says whether err is a permanent failure.
func Permanent(err error) bool {
	if errors.Is(err, ErrPermanent) {
		return true
	}
	var te *textproto.Error
	return errors.As(err, &te) && te.Code >= 500
}

// dialSMTP sends one message through the workspace's server: connect (TLS
// from the first byte for implicit), EHLO, STARTTLS when required, AUTH
// PLAIN when a user or secret is set, MAIL, RCPT, DATA, QUIT, all within
// timeout.
func dialSMTP(ctx context.Context, st schema.EmailSettings, secret []byte, allowPlain bool, timeout time.Duration, from, to string, msg []byte) (err error) {
	if st.TLS == schema.TLSNone && !allowPlain {
		return fmt.Errorf("%w: tls none refused by this node (-email-allow-plaintext)", ErrPermanent)
	}
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	addr := net.JoinHostPort(st.Host, strconv.Itoa(st.Port))
	tcfg := &tls.Config{ServerName: st.Host, MinVersion: tls.VersionTLS12}
	var conn net.Conn
	d := &net.Dialer{}
	if st.TLS == schema.TLSImplicit {
		conn, err = (&tls.Dialer{NetDialer: d, Config: tcfg}).DialContext(ctx, "tcp", addr)
	} else {
		conn, err = d.DialContext(ctx, "tcp", addr)
	}
	if err != nil {
		return fmt.Errorf("smtp %s: %w", addr, err)
	}
	dl, _ := ctx.Deadline()
	conn.SetDeadline(dl)
	stop := context.AfterFunc(ctx, func() { conn.SetDeadline(time.Unix(1, 0)) })
	defer stop()
	c, err := smtp.NewClient(conn, st.Host)
	if err != nil {
		conn.Close()
		return fmt.Errorf("smtp %s: greeting: %w", addr, err)
	}
	defer c.Close()
	if err := c.Hello("parley"); err != nil {
		return fmt.Errorf("smtp %s: EHLO: %w", addr, err)
	}
	if st.TLS == schema.TLSStartTLS {
		if ok, _ := c.Extension("STARTTLS"); !ok {
			return fmt.Errorf("%w: smtp %s offers no STARTTLS, which the settings require", ErrPermanent, addr)
		}
		if err := c.StartTLS(tcfg); err != nil {
			return fmt.Errorf("smtp %s: STARTTLS: %w", addr, err)
		}
	}
	if st.User != "" || len(secret) > 0 {
		if err := c.Auth(plainAuth{user: st.User, pass: string(secret), allowPlain: allowPlain && st.TLS == schema.TLSNone}); err != nil {
			return fmt.Errorf("smtp %s: AUTH: %w", addr, err)
		}
	}
	if err := c.Mail(from); err != nil {
		return fmt.Errorf("smtp %s: MAIL FROM: %w", addr, err)
	}
	if err := c.Rcpt(to); err != nil {
		return fmt.Errorf("smtp %s: RCPT TO: %w", addr, err)
	}
	w, err := c.Data()
	if err != nil {
		return fmt.Errorf("smtp %s: DATA: %w", addr, err)
	}
	if _, err := w.Write(msg); err != nil {
		return fmt.Errorf("smtp %s: DATA: %w", addr, err)
	}
	if err := w.Close(); err != nil {
		return fmt.Errorf("smtp %s: end of DATA: %w", addr, err)
	}
	c.Quit() // the message is accepted: a failed QUIT changes nothing
	return nil
}

// plainAuth is AUTH PLAIN (RFC 4616), sent only over TLS, or in clear
// when the node allows plaintext settings (net/smtp's PlainAuth allows
// clear only to a host named localhost).
type plainAuth struct {
	user, pass string
	allowPlain bool
}

func (a plainAuth) Start(server *smtp.ServerInfo) (string, []byte, error) {
	if !server.TLS && !a.allowPlain {
		return "", nil, fmt.Errorf("%w: refusing to send the password over an unencrypted connection", ErrPermanent)
	}
	return "PLAIN", []byte("\x00" + a.user + "\x00" + a.pass), nil
}

func (a plainAuth) Next(_ []byte, more bool) ([]byte, error) {
	if more {
		return nil, fmt.Errorf("%w: unexpected AUTH PLAIN challenge", ErrPermanent)
	}
	return nil, nil
}
