package main

import (
	"fmt"
	"net/http"
	"time"

	"parley/cluster/schema"
)

func init() {
	register(
		command{"workspace create", "-id ID -name NAME [-region REGION] [-plan PLAN] [-brand ID=NAME]...",
			"create a workspace, pinned to a region if given; prints its identity secret, once: no command shows it again (a new one: workspace rotate-secret)", workspaceCreate},
		command{"workspace list", "", "list the workspaces (a key or session sees its own)", workspaceList},
		command{"workspaces", "", "same as workspace list", workspaceList},
		command{"workspace show", "ID", "show a workspace", workspaceShow},
		command{"workspace update", "ID [-name NAME] [-region REGION] [-plan PLAN] [-brand ID=NAME]... [-no-brands]",
			"change a workspace (-region \"\" unpins it; brands replace the list)", workspaceUpdate},
		command{"workspace delete", "ID -yes", "delete a workspace and everything in it, on every node (its ID is never reused)", workspaceDelete},
		command{"workspace secrets", "ID", "when the identity secret was rotated and until when the one it replaced verifies (never the secret)", workspaceSecrets},
		command{"workspace rotate-secret", "ID -overlap DURATION",
			"give the workspace a new identity secret, printed once; the old one verifies for DURATION more (\"24h\", \"0s\"); a session of an admin or the cluster administrator, not an API key", workspaceRotateSecret},
	)
}

// out prints raw for -json, else calls text.
func (e *env) out(raw []byte, text func()) error {
	if e.g.json {
		return printJSON(e.stdout, raw)
	}
	text()
	return nil
}

func workspaceCreate(e *env, args []string) error {
	f := e.flags("workspace create")
	id := f.String("id", "", "workspace ID")
	name := f.String("name", "", "display name")
	region := f.String("region", "", "region to pin the workspace's data to (empty: unpinned)")
	plan := f.String("plan", "free", "plan")
	var brands multi
	f.Var(&brands, "brand", "brand ID=Name (repeatable)")
	if _, err := f.parse(args, 0, 0); err != nil {
		return err
	}
	if *id == "" || *name == "" {
		return usagef("-id and -name are required")
	}
	bs, err := parseBrands(brands)
	if err != nil {
		return err
	}
	if err := valid(schema.CreateWorkspace{ID: *id, Name: *name, Region: *region, Plan: *plan, Brands: bs, Created: time.Now()}); err != nil {
		return err
	}
	var rep struct {
		Workspace      schema.Workspace `json:"workspace"`
		IdentitySecret string           `json:"identity_secret"`
	}
	raw, err := e.call(http.MethodPost, "/v1/admin/workspaces", nil,
		map[string]any{"id": *id, "name": *name, "region": *region, "plan": *plan, "brands": bs}, &rep, true)
	if err != nil {
		return err
	}
	return e.out(raw, func() {
		printWorkspace(e, rep.Workspace)
		fmt.Fprintf(e.stdout, "identity secret  %s\n", rep.IdentitySecret)
		fmt.Fprintln(e.stdout, "Shown once: no command shows it again. Keep it on the site's server: it signs verified visitors' identity tokens and user_hash (docs/protocol.md).")
	})
}

func printWorkspace(e *env, w schema.Workspace) {
	brands := ""
	for i, b := range w.Brands {
		if i > 0 {
			brands += ", "
		}
		brands += b.ID + " (" + b.Name + ")"
	}
	fields(e.stdout,
		"workspace", w.ID,
		"name", w.Name,
		"region", orNone(w.Region, "unpinned"),
		"plan", w.Plan,
		"brands", brands,
		"created", day(w.Created),
	)
}

func workspaceList(e *env, args []string) error {
	if _, err := e.flags("workspace list").parse(args, 0, 0); err != nil {
		return err
	}
	var ws []schema.Workspace
	raw, err := e.call(http.MethodGet, "/v1/admin/workspaces", nil, nil, &ws, true)
	if err != nil {
		return err
	}
	return e.out(raw, func() {
		var rows [][]string
		for _, w := range ws {
			rows = append(rows, []string{w.ID, w.Name, orNone(w.Region, "unpinned"), w.Plan, fmt.Sprint(len(w.Brands)), day(w.Created)})
		}
		table(e.stdout, []string{"ID", "NAME", "REGION", "PLAN", "BRANDS", "CREATED"}, rows)
	})
}

// oneID parses a command that takes one ID argument.
func oneID(e *env, name, what string, args []string) (string, error) {
	pos, err := e.flags(name).parse(args, 1, 1)
	if err != nil {
		return "", err
	}
	return pos[0], checkID(what, pos[0])
}

func workspaceShow(e *env, args []string) error {
	id, err := oneID(e, "workspace show", "workspace", args)
	if err != nil {
		return err
	}
	var w schema.Workspace
	raw, err := e.call(http.MethodGet, wsPath(id), nil, nil, &w, true)
	if err != nil {
		return err
	}
	return e.out(raw, func() { printWorkspace(e, w) })
}

func workspaceUpdate(e *env, args []string) error {
	f := e.flags("workspace update")
	name := f.String("name", "", "display name")
	region := f.String("region", "", "region (\"\" unpins)")
	plan := f.String("plan", "", "plan")
	noBrands := f.Bool("no-brands", false, "remove every brand")
	var brands multi
	f.Var(&brands, "brand", "brand ID=Name (repeatable; replaces the list)")
	pos, err := f.parse(args, 1, 1)
	if err != nil {
		return err
	}
	if err := checkID("workspace", pos[0]); err != nil {
		return err
	}
	cmd := schema.UpdateWorkspace{ID: pos[0]}
	body := map[string]any{}
	if f.given("name") {
		cmd.Name, body["name"] = name, *name
	}
	if f.given("region") {
		cmd.Region, body["region"] = region, *region
	}
	if f.given("plan") {
		cmd.Plan, body["plan"] = plan, *plan
	}
	if len(brands) > 0 && *noBrands {
		return usagef("-brand and -no-brands: give one")
	}
	if len(brands) > 0 || *noBrands {
		bs, err := parseBrands(brands)
		if err != nil {
			return err
		}
		if bs == nil {
			bs = []schema.Brand{}
		}
		cmd.Brands, body["brands"] = &bs, bs
	}
	if len(body) == 0 {
		return usagef("nothing to change: give -name, -region, -plan, -brand or -no-brands")
	}
	if err := valid(cmd); err != nil {
		return err
	}
	var rep struct {
		Workspace    schema.Workspace   `json:"workspace"`
		Confirmation confirmation       `json:"confirmation"`
		Purge        *purgeConfirmation `json:"purge"`
	}
	raw, err := e.call(http.MethodPatch, wsPath(pos[0]), nil, body, &rep, true)
	if err != nil {
		return err
	}
	return e.out(raw, func() {
		printWorkspace(e, rep.Workspace)
		if _, ok := body["brands"]; ok {
			rep.Confirmation.print(e.stdout, "keys of removed brands revoked")
		}
		if rep.Purge != nil {
			// A region change: the nodes outside it hand the data over and
			// purge it.
			rep.Purge.print(e.stdout)
		}
	})
}

func workspaceDelete(e *env, args []string) error {
	f := e.flags("workspace delete")
	yes := f.Bool("yes", false, "really delete")
	pos, err := f.parse(args, 1, 1)
	if err != nil {
		return err
	}
	if err := checkID("workspace", pos[0]); err != nil {
		return err
	}
	if !*yes {
		return usagef("deleting %s removes its operators, sessions, keys, secrets, usage, billing events, assignments and every node's copy of its conversations and saved replies; its ID can never be used again: add -yes", pos[0])
	}
	var c struct {
		confirmation
		Purge purgeConfirmation `json:"purge"`
	}
	raw, err := e.call(http.MethodDelete, wsPath(pos[0]), nil, nil, &c, true)
	if err != nil {
		return err
	}
	return e.out(raw, func() {
		c.confirmation.print(e.stdout, "workspace "+pos[0]+" deleted")
		c.Purge.print(e.stdout)
	})
}
