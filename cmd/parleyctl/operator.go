package main

import (
	"bufio"
	"fmt"
	"net/http"
	"strings"

	"parley/cluster/schema"
)

func init() {
	register(
		command{"operator invite", "-workspace WS -email EMAIL -name NAME [-id ID] [-role agent|admin] [-password P | -password-stdin]",
			"add an operator; without a password, prints a one-time password", operatorInvite},
		command{"operator list", "-workspace WS", "list a workspace's operators", operatorList},
		command{"operator remove", "-workspace WS ID", "remove an operator (ends their sessions, unassigns their conversations)", operatorRemove},
		command{"operator password", "-workspace WS ID (-password P | -password-stdin)",
			"set an operator's password (ends their sessions)", operatorPassword},
		command{"login", "-workspace WS -email EMAIL (-password P | -password-stdin)",
			"sign in as an operator: prints a session token (details on stderr)", login},
		command{"logout", "", "end the session whose token is -token", logout},
		command{"session revoke", "-workspace WS SESSION_ID", "revoke an operator's session (s_…)", sessionRevoke},
	)
}

// passwordFlags registers -password and -password-stdin.
func passwordFlags(f *cmdFlags) (pw *string, stdin *bool) {
	pw = f.String("password", envOr("PARLEY_PASSWORD", ""), "password (visible to other local users: prefer -password-stdin)")
	stdin = f.Bool("password-stdin", false, "read the password from the first line of stdin")
	return pw, stdin
}

// readPassword returns the password from the flags; required says an
// empty one is a usage error.
func (e *env) readPassword(pw string, fromStdin, required bool) (string, error) {
	if fromStdin {
		if pw != "" && pw != envOr("PARLEY_PASSWORD", "") {
			return "", usagef("-password and -password-stdin: give one")
		}
		line, err := bufio.NewReader(e.stdin).ReadString('\n')
		if err != nil && line == "" {
			return "", usagef("-password-stdin: no password on stdin")
		}
		pw = strings.TrimRight(line, "\r\n")
	}
	if pw == "" {
		if required {
			return "", usagef("a password is required: -password-stdin (or -password, env PARLEY_PASSWORD)")
		}
		return "", nil
	}
	return pw, checkPassword(pw)
}

// idFromEmail makes an operator ID from an email's local part.
func idFromEmail(email string) string {
	local, _, _ := strings.Cut(strings.ToLower(email), "@")
	var b strings.Builder
	for _, r := range local {
		switch {
		case r >= 'a' && r <= 'z', r >= '0' && r <= '9', r == '_', r == '-':
			b.WriteRune(r)
		default:
			b.WriteRune('-')
		}
	}
	s := b.String()
	if len(s) > 64 {
		s = s[:64]
	}
	return s
}

func operatorInvite(e *env, args []string) error {
	f := e.flags("operator invite")
	ws := f.workspaceFlag()
	email := f.String("email", "", "email (the sign-in name)")
	name := f.String("name", "", "display name")
	id := f.String("id", "", "operator ID (default: from the email)")
	role := f.String("role", "agent", "agent or admin")
	pwFlag, pwStdin := passwordFlags(f)
	if _, err := f.parse(args, 0, 0); err != nil {
		return err
	}
	if err := needWorkspace(*ws); err != nil {
		return err
	}
	if *email == "" || *name == "" {
		return usagef("-email and -name are required")
	}
	if err := checkEmail(*email); err != nil {
		return err
	}
	if *id == "" {
		*id = idFromEmail(*email)
	}
	if err := checkID("operator", *id); err != nil {
		return err
	}
	r := schema.Role(*role)
	if err := valid(schema.UpdateOperator{Workspace: *ws, ID: *id, Name: name, Role: &r}); err != nil {
		return err
	}
	pw, err := e.readPassword(*pwFlag, *pwStdin, false)
	if err != nil {
		return err
	}
	var rep struct {
		Operator schema.Operator `json:"operator"`
		Password string          `json:"password"`
		Index    uint64          `json:"index"`
	}
	raw, err := e.call(http.MethodPost, wsPath(*ws, "operators"), nil,
		map[string]any{"id": *id, "email": *email, "name": *name, "role": r, "password": pw}, &rep, true)
	if err != nil {
		return err
	}
	return e.out(raw, func() {
		o := rep.Operator
		fields(e.stdout, "operator", o.ID, "workspace", o.Workspace, "email", o.Email, "name", o.Name, "role", string(o.Role),
			"log index", fmt.Sprint(rep.Index))
		if rep.Password != "" {
			fmt.Fprintf(e.stdout, "one-time password  %s\n", rep.Password)
			fmt.Fprintln(e.stdout, "Shown once: hand it to the operator, who should set their own (parleyctl operator password).")
		}
	})
}

func operatorList(e *env, args []string) error {
	f := e.flags("operator list")
	ws := f.workspaceFlag()
	if _, err := f.parse(args, 0, 0); err != nil {
		return err
	}
	if err := needWorkspace(*ws); err != nil {
		return err
	}
	var ops []schema.Operator
	raw, err := e.call(http.MethodGet, wsPath(*ws, "operators"), nil, nil, &ops, true)
	if err != nil {
		return err
	}
	return e.out(raw, func() {
		var rows [][]string
		for _, o := range ops {
			rows = append(rows, []string{o.ID, o.Email, o.Name, string(o.Role), day(o.Created)})
		}
		table(e.stdout, []string{"ID", "EMAIL", "NAME", "ROLE", "CREATED"}, rows)
	})
}

// wsAndID parses "-workspace WS ID".
func wsAndID(e *env, name, what string, args []string) (ws, id string, err error) {
	f := e.flags(name)
	w := f.workspaceFlag()
	pos, err := f.parse(args, 1, 1)
	if err != nil {
		return "", "", err
	}
	if err := needWorkspace(*w); err != nil {
		return "", "", err
	}
	return *w, pos[0], nil
}

func operatorRemove(e *env, args []string) error {
	ws, id, err := wsAndID(e, "operator remove", "operator", args)
	if err != nil {
		return err
	}
	if err := checkID("operator", id); err != nil {
		return err
	}
	var c confirmation
	raw, err := e.call(http.MethodDelete, wsPath(ws, "operators", id), nil, nil, &c, true)
	if err != nil {
		return err
	}
	return e.out(raw, func() { c.print(e.stdout, "operator "+id+" removed, their sessions ended") })
}

func operatorPassword(e *env, args []string) error {
	f := e.flags("operator password")
	ws := f.workspaceFlag()
	pwFlag, pwStdin := passwordFlags(f)
	pos, err := f.parse(args, 1, 1)
	if err != nil {
		return err
	}
	if err := needWorkspace(*ws); err != nil {
		return err
	}
	if err := checkID("operator", pos[0]); err != nil {
		return err
	}
	pw, err := e.readPassword(*pwFlag, *pwStdin, true)
	if err != nil {
		return err
	}
	var c confirmation
	raw, err := e.call(http.MethodPut, wsPath(*ws, "operators", pos[0], "password"), nil, map[string]string{"password": pw}, &c, true)
	if err != nil {
		return err
	}
	return e.out(raw, func() { c.print(e.stdout, "password of "+pos[0]+" set, their sessions ended") })
}

func login(e *env, args []string) error {
	f := e.flags("login")
	ws := f.workspaceFlag()
	email := f.String("email", "", "operator's email")
	pwFlag, pwStdin := passwordFlags(f)
	if _, err := f.parse(args, 0, 0); err != nil {
		return err
	}
	if err := needWorkspace(*ws); err != nil {
		return err
	}
	if err := checkEmail(*email); err != nil {
		return err
	}
	pw, err := e.readPassword(*pwFlag, *pwStdin, true)
	if err != nil {
		return err
	}
	var rep struct {
		Token   string         `json:"token"`
		Session schema.Session `json:"session"`
	}
	raw, err := e.call(http.MethodPost, "/v1/login", nil, map[string]string{"workspace": *ws, "email": *email, "password": pw}, &rep, false)
	if err != nil {
		return err
	}
	return e.out(raw, func() {
		fmt.Fprintln(e.stdout, rep.Token)
		fmt.Fprintf(e.stderr, "session %s of %s in %s, expires %s; use the token with -token (or PARLEY_TOKEN)\n",
			rep.Session.ID, rep.Session.Operator, rep.Session.Workspace, day(rep.Session.Expires))
	})
}

func logout(e *env, args []string) error {
	if _, err := e.flags("logout").parse(args, 0, 0); err != nil {
		return err
	}
	if e.g.token == "" {
		return usagef("give the session's token with -token (or PARLEY_TOKEN)")
	}
	var c confirmation
	raw, err := e.call(http.MethodPost, "/v1/logout", nil, nil, &c, true)
	if err != nil {
		return err
	}
	return e.out(raw, func() { c.print(e.stdout, "session ended") })
}

func sessionRevoke(e *env, args []string) error {
	ws, id, err := wsAndID(e, "session revoke", "session", args)
	if err != nil {
		return err
	}
	if err := valid(schema.RevokeSession{ID: id}); err != nil {
		return err
	}
	var c confirmation
	raw, err := e.call(http.MethodDelete, wsPath(ws, "sessions", id), nil, nil, &c, true)
	if err != nil {
		return err
	}
	return e.out(raw, func() { c.print(e.stdout, "session "+id+" revoked") })
}
