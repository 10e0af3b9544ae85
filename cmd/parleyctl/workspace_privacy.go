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
