package main

import (
	"bufio"
	"fmt"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"time"

	"parley/cluster/schema"
)

func init() {
	register(
		command{"email set", "-workspace WS -host HOST -port PORT -tls implicit|starttls|none -from ADDRESS [-user USER] [-password-stdin | -clear-password] [-site-url URL]",
			"set a workspace's SMTP settings; the password or API key (read from stdin) is sealed and never shown again, and a new one replaces it", emailSet},
		command{"email show", "-workspace WS", "show a workspace's SMTP settings (never the password)", emailShow},
		command{"email delete", "-workspace WS", "remove a workspace's SMTP settings and their secret", emailDelete},
		command{"email deliveries", "-workspace WS [-status sent|retrying|failed]",
			"list the conversations' last mail outcomes, with the SMTP error", emailDeliveries},
	)
}

func emailSet(e *env, args []string) error {
	f := e.flags("email set")
	ws := f.workspaceFlag()
	host := f.String("host", "", "the SMTP server's host")
	port := f.Int("port", 0, "the SMTP server's port (465 implicit TLS, 587 STARTTLS)")
	tlsMode := f.String("tls", "", "implicit, starttls, or none (only on nodes run with -email-allow-plaintext)")
	user := f.String("user", "", "the SMTP user (none: no authentication)")
	from := f.String("from", "", "the sender's address")
	site := f.String("site-url", "", "the page a mail links back to (the widget opens on it)")
	stdin := f.Bool("password-stdin", false, "read the SMTP password or API key from the first line of stdin")
	clear := f.Bool("clear-password", false, "drop the password held")
	if _, err := f.parse(args, 0, 0); err != nil {
		return err
	}
	if err := needWorkspace(*ws); err != nil {
		return err
	}
	st := schema.EmailSettings{Workspace: *ws, Host: *host, Port: *port, TLS: *tlsMode, User: *user, From: *from, SiteURL: *site,
		Created: time.Now(), Updated: time.Now()}
	if err := firstUsage(st.Validate()); err != nil {
		return err
	}
	body := map[string]any{"host": *host, "port": *port, "tls": *tlsMode, "from": *from}
	if *user != "" {
		body["user"] = *user
	}
	if *site != "" {
		body["site_url"] = *site
	}
	switch {
	case *stdin && *clear:
		return usagef("-password-stdin and -clear-password: give one")
	case *stdin:
		line, err := bufio.NewReader(e.stdin).ReadString('\n')
		pw := strings.TrimRight(line, "\r\n")
		if (err != nil && line == "") || pw == "" {
			return usagef("-password-stdin: no password on stdin")
		}
		body["password"] = pw
	case *clear:
		body["password"] = ""
	}
	var rep schema.EmailSettings
	raw, err := e.call(http.MethodPut, wsPath(*ws, "email"), nil, body, &rep, true)
	if err != nil {
		return err
	}
	return e.out(raw, func() { showEmail(e, rep) })
}

func showEmail(e *env, st schema.EmailSettings) {
	fields(e.stdout, "host", st.Host, "port", strconv.Itoa(st.Port), "tls", st.TLS, "user", st.User, "from", st.From,
		"site url", st.SiteURL, "password set", strconv.FormatBool(st.PasswordSet), "updated", st.Updated.UTC().Format(time.RFC3339))
}

// onlyWorkspace parses a command that takes -workspace alone.
func onlyWorkspace(e *env, name string, args []string) (string, error) {
	f := e.flags(name)
	ws := f.workspaceFlag()
	if _, err := f.parse(args, 0, 0); err != nil {
		return "", err
	}
	return *ws, needWorkspace(*ws)
}

func emailShow(e *env, args []string) error {
	ws, err := onlyWorkspace(e, "email show", args)
	if err != nil {
		return err
	}
	var st schema.EmailSettings
	raw, err := e.call(http.MethodGet, wsPath(ws, "email"), nil, nil, &st, true)
	if err != nil {
		return err
	}
	return e.out(raw, func() { showEmail(e, st) })
}

func emailDelete(e *env, args []string) error {
	ws, err := onlyWorkspace(e, "email delete", args)
	if err != nil {
		return err
	}
	raw, err := e.call(http.MethodDelete, wsPath(ws, "email"), nil, nil, nil, true)
	if err != nil {
		return err
	}
	return e.out(raw, func() { fmt.Fprintf(e.stdout, "e-mail settings of %s deleted\n", ws) })
}

func emailDeliveries(e *env, args []string) error {
	f := e.flags("email deliveries")
	ws := f.workspaceFlag()
	status := f.String("status", "", "only sent, retrying or failed")
	if _, err := f.parse(args, 0, 0); err != nil {
		return err
	}
	if err := needWorkspace(*ws); err != nil {
		return err
	}
	q := url.Values{}
	if *status != "" {
		q.Set("status", *status)
	}
	var states []schema.MailState
	raw, err := e.call(http.MethodGet, wsPath(*ws, "email", "deliveries"), q, nil, &states, true)
	if err != nil {
		return err
	}
	return e.out(raw, func() {
		var rows [][]string
		for _, s := range states {
			rows = append(rows, []string{s.Conversation, s.Kind, s.Status, strconv.Itoa(s.Sent), strconv.Itoa(s.Failed), s.At.UTC().Format(time.RFC3339), s.Error})
		}
		table(e.stdout, []string{"CONVERSATION", "KIND", "STATUS", "SENT", "FAILED", "AT", "ERROR"}, rows)
	})
}
