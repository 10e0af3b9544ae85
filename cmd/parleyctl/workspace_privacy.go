package main

import (
	"fmt"
	"net/http"

	"parley/cluster/schema"
)

func init() {
	register(
		command{"workspace retention", "-workspace WS -days N",
			"erase each conversation of a workspace N days after its last message, on every node (0: keep them)", workspaceRetention},
		command{"workspace visitor-deletion", "-workspace WS -mode (immediate | confirm)",
			"what a visitor's request to be forgotten, from the widget, does: erase them at once, or wait for an agent's confirmation", workspaceVisitorDeletion},
	)
}

func workspaceRetention(e *env, args []string) error {
	f := e.flags("workspace retention")
	ws := f.workspaceFlag()
	days := f.Int("days", -1, "days after a conversation's last message; 0 turns retention off")
	if _, err := f.parse(args, 0, 0); err != nil {
		return err
	}
	if err := needWorkspace(*ws); err != nil {
		return err
	}
	if !f.given("days") {
		return usagef("-days is required (0 turns retention off)")
	}
	if err := valid(schema.SetRetention{Workspace: *ws, Days: *days}); err != nil {
		return err
	}
	var rep struct {
		RetentionDays int    `json:"retention_days"`
		Index         uint64 `json:"index"`
	}
	raw, err := e.call(http.MethodPut, wsPath(*ws, "retention"), nil, map[string]int{"days": *days}, &rep, true)
	if err != nil {
		return err
	}
	return e.out(raw, func() {
		what := fmt.Sprintf("%d days after their last message", rep.RetentionDays)
		if rep.RetentionDays == 0 {
			what = "never (retention off)"
		}
		fields(e.stdout, "workspace", *ws, "conversations erased", what, "log index", fmt.Sprint(rep.Index))
	})
}

func workspaceVisitorDeletion(e *env, args []string) error {
	f := e.flags("workspace visitor-deletion")
	ws := f.workspaceFlag()
	mode := f.String("mode", "", "immediate: erase at once; confirm: wait for an agent")
	if _, err := f.parse(args, 0, 0); err != nil {
		return err
	}
	if err := needWorkspace(*ws); err != nil {
		return err
	}
	if err := valid(schema.SetVisitorDeletion{Workspace: *ws, Mode: *mode}); err != nil {
		return err
	}
	var rep struct {
		VisitorDeletion string `json:"visitor_deletion"`
		Index           uint64 `json:"index"`
	}
	raw, err := e.call(http.MethodPut, wsPath(*ws, "visitor-deletion"), nil, map[string]string{"mode": *mode}, &rep, true)
	if err != nil {
		return err
	}
	return e.out(raw, func() {
		fields(e.stdout, "workspace", *ws, "visitor deletion", rep.VisitorDeletion, "log index", fmt.Sprint(rep.Index))
	})
}
