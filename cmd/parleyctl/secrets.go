package main

import (
	"fmt"
	"net/http"
	"time"

	"parley/cluster/schema"
)

type secretInfo struct {
	Rotated       *time.Time `json:"rotated"`
	PreviousUntil *time.Time `json:"previous_valid_until"`
}

func (s secretInfo) print(e *env, id string) {
	rotated, until := "never", "-"
	if s.Rotated != nil {
		rotated = s.Rotated.UTC().Format(time.RFC3339)
	}
	if s.PreviousUntil != nil {
		until = s.PreviousUntil.UTC().Format(time.RFC3339)
		if !s.PreviousUntil.After(time.Now()) {
			until += " (ended)"
		}
	}
	fields(e.stdout, "workspace", id, "rotated", rotated, "old secret until", until)
}

func workspaceSecrets(e *env, args []string) error {
	id, err := oneID(e, "workspace secrets", "workspace", args)
	if err != nil {
		return err
	}
	var rep secretInfo
	raw, err := e.call(http.MethodGet, wsPath(id, "secrets"), nil, nil, &rep, true)
	if err != nil {
		return err
	}
	return e.out(raw, func() { rep.print(e, id) })
}

func workspaceRotateSecret(e *env, args []string) error {
	f := e.flags("workspace rotate-secret")
	overlap := f.Duration("overlap", -1, "how long the old secret keeps verifying (0s: it stops at once)")
	pos, err := f.parse(args, 1, 1)
	if err != nil {
		return err
	}
	if err := checkID("workspace", pos[0]); err != nil {
		return err
	}
	if !f.given("overlap") {
		return usagef("-overlap is required: how long the old secret keeps verifying (\"24h\", \"0s\")")
	}
	if *overlap < 0 || *overlap > schema.MaxSecretOverlap {
		return usagef("-overlap %v: want 0s to %v", *overlap, schema.MaxSecretOverlap)
	}
	var rep struct {
		IdentitySecret string `json:"identity_secret"`
		secretInfo
		Confirmation confirmation `json:"confirmation"`
	}
	raw, err := e.call(http.MethodPost, wsPath(pos[0], "secrets", "identity", "rotate"), nil,
		map[string]any{"overlap": overlap.String()}, &rep, true)
	if err != nil {
		return err
	}
	return e.out(raw, func() {
		rep.print(e, pos[0])
		fmt.Fprintf(e.stdout, "identity secret   %s\n", rep.IdentitySecret)
		fmt.Fprintln(e.stdout, "Shown once: no command shows it again. Give it to the site's server before the old one stops verifying.")
		if len(rep.Confirmation.Unconfirmed) > 0 {
			fmt.Fprintf(e.stdout, "not yet applied by: %v (they verify the new secret once they have)\n", rep.Confirmation.Unconfirmed)
		}
	})
}
