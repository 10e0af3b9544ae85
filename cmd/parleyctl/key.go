package main

import (
	"fmt"
	"net/http"
	"time"

	"parley/cluster/schema"
)

func init() {
	register(
		command{"key mint", "-workspace WS -name NAME [-brand BRAND]",
			"mint an API key (pk_…), scoped to a brand if given; prints the key once", keyMint},
		command{"key list", "-workspace WS", "list a workspace's API keys, revoked ones included", keyList},
		command{"key revoke", "-workspace WS KEY_ID",
			"revoke an API key (k_…); returns once no node accepts it, naming the nodes that confirmed", keyRevoke},
	)
}

func keyMint(e *env, args []string) error {
	f := e.flags("key mint")
	ws := f.workspaceFlag()
	name := f.String("name", "", "what the key is for")
	brand := f.String("brand", "", "brand the key is scoped to")
	if _, err := f.parse(args, 0, 0); err != nil {
		return err
	}
	if err := needWorkspace(*ws); err != nil {
		return err
	}
	if *name == "" {
		return usagef("-name is required (what the key is for)")
	}
	if err := valid(schema.CreateKey{Hash: schema.HashToken("x"), Workspace: *ws, Brand: *brand, Name: *name, Created: time.Now()}); err != nil {
		return err
	}
	var rep struct {
		Key  string     `json:"key"`
		Info schema.Key `json:"info"`
	}
	raw, err := e.call(http.MethodPost, wsPath(*ws, "keys"), nil, map[string]string{"name": *name, "brand": *brand}, &rep, true)
	if err != nil {
		return err
	}
	return e.out(raw, func() {
		fields(e.stdout, "key", rep.Key, "id", rep.Info.ID, "workspace", rep.Info.Workspace, "brand", rep.Info.Brand, "name", rep.Info.Name)
		fmt.Fprintln(e.stdout, "The key is shown once: only its SHA-256 is stored. Revoke it by its id.")
	})
}

func keyList(e *env, args []string) error {
	f := e.flags("key list")
	ws := f.workspaceFlag()
	if _, err := f.parse(args, 0, 0); err != nil {
		return err
	}
	if err := needWorkspace(*ws); err != nil {
		return err
	}
	var keys []schema.Key
	raw, err := e.call(http.MethodGet, wsPath(*ws, "keys"), nil, nil, &keys, true)
	if err != nil {
		return err
	}
	return e.out(raw, func() {
		var rows [][]string
		for _, k := range keys {
			state := "active"
			if k.Revoked {
				state = fmt.Sprintf("revoked (index %d)", k.RevokedIndex)
			}
			rows = append(rows, []string{k.ID, k.Name, k.Brand, day(k.Created), state})
		}
		table(e.stdout, []string{"ID", "NAME", "BRAND", "CREATED", "STATE"}, rows)
	})
}

func keyRevoke(e *env, args []string) error {
	ws, id, err := wsAndID(e, "key revoke", "key", args)
	if err != nil {
		return err
	}
	if err := valid(schema.RevokeKey{ID: id}); err != nil {
		return err
	}
	var c confirmation
	raw, err := e.call(http.MethodDelete, wsPath(ws, "keys", id), nil, nil, &c, true)
	if err != nil {
		return err
	}
	return e.out(raw, func() { c.print(e.stdout, "key "+id+" revoked") })
}
