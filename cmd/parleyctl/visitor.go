package main

import (
	"fmt"
	"net/http"
	"strings"

	"parley/cluster/schema"
)

func init() {
	register(
		command{"visitor erase", "-workspace WS (-visitor-id ID | -user-id ID)",
			"erase every conversation of one visitor on every node, naming the nodes that confirmed", visitorErase},
	)
}

func visitorErase(e *env, args []string) error {
	f := e.flags("visitor erase")
	ws := f.workspaceFlag()
	visitorID := f.String("visitor-id", "", "an anonymous visitor's visitor_id (32 hex digits)")
	userID := f.String("user-id", "", "a verified visitor's user_id")
	if _, err := f.parse(args, 0, 0); err != nil {
		return err
	}
	if err := needWorkspace(*ws); err != nil {
		return err
	}
	body := map[string]string{}
	participant := ""
	switch {
	case *visitorID != "" && *userID == "":
		body["visitor_id"], participant = *visitorID, "v:"+*visitorID
	case *userID != "" && *visitorID == "":
		body["user_id"], participant = *userID, "u:"+*userID
	default:
		return usagef("give one of -visitor-id and -user-id")
	}
	if err := valid(schema.EraseVisitor{Workspace: *ws, Visitor: participant}); err != nil {
		return err
	}
	var rep struct {
		Visitor string `json:"visitor"`
		confirmation
	}
	raw, err := e.call(http.MethodPost, wsPath(*ws, "erasures"), nil, body, &rep, true)
	if err != nil {
		return err
	}
	return e.out(raw, func() {
		fmt.Fprintf(e.stdout, "visitor %s erased at log index %d\n", rep.Visitor, rep.Index)
		fmt.Fprintf(e.stdout, "confirmed by:   %s\n", orNone(strings.Join(rep.Confirmed, ", "), "none"))
		if len(rep.Unconfirmed) > 0 {
			fmt.Fprintf(e.stdout, "unconfirmed:    %s (unreachable; each erases the visitor's conversations when it catches up, before it serves again; erase again to see their confirmations)\n", strings.Join(rep.Unconfirmed, ", "))
		} else {
			fmt.Fprintln(e.stdout, "every node has erased its copies")
		}
	})
}
