package main

import (
	"fmt"
	"maps"
	"net/http"
	"net/url"
	"slices"
	"strconv"
	"strings"

	"parley/cluster/schema"
)

func init() {
	register(
		command{"visitor erase", "-workspace WS (-visitor-id ID | -user-id ID)",
			"erase every conversation of one visitor on every node, naming the nodes that confirmed", visitorErase},
		command{"export", "-workspace WS [-visitor-id ID | -user-id ID] [-limit N]",
			"print a workspace's data, or one visitor's, as JSON, one line a page, gathered from every node of the region; never a secret; fails naming the nodes it could not reach", export},
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

// export prints every page of an export, one line of JSON each, following
// the pages' next cursors.
func export(e *env, args []string) error {
	f := e.flags("export")
	ws := f.workspaceFlag()
	visitorID := f.String("visitor-id", "", "only this anonymous visitor's conversations")
	userID := f.String("user-id", "", "only this verified visitor's conversations")
	limit := f.Int("limit", 50, "conversations a page, 1..200")
	if _, err := f.parse(args, 0, 0); err != nil {
		return err
	}
	if err := needWorkspace(*ws); err != nil {
		return err
	}
	if *limit < 1 || *limit > 200 {
		return usagef("-limit: 1..200")
	}
	q := url.Values{"limit": {strconv.Itoa(*limit)}}
	switch {
	case *visitorID != "" && *userID != "":
		return usagef("-visitor-id and -user-id: give one")
	case *visitorID != "":
		q.Set("visitor_id", *visitorID)
		if err := valid(schema.EraseVisitor{Workspace: *ws, Visitor: "v:" + *visitorID}); err != nil {
			return err
		}
	case *userID != "":
		q.Set("user_id", *userID)
		if err := valid(schema.EraseVisitor{Workspace: *ws, Visitor: "u:" + *userID}); err != nil {
			return err
		}
	}
	unreachable, missing := map[string]bool{}, 0
	for {
		var page struct {
			Next        string   `json:"next"`
			Unreachable []string `json:"unreachable"`
			Missing     []string `json:"missing"`
		}
		raw, err := e.call(http.MethodGet, wsPath(*ws, "export"), q, nil, &page, true)
		if err != nil {
			return err
		}
		if _, err := e.stdout.Write(raw); err != nil {
			return err
		}
		for _, n := range page.Unreachable {
			unreachable[n] = true
		}
		missing += len(page.Missing)
		if page.Next == "" {
			break
		}
		q.Set("cursor", page.Next)
	}
	if len(unreachable) > 0 {
		return fmt.Errorf("export: nodes of the region unreachable: %s (%d conversations missing): export again when they are back", strings.Join(slices.Sorted(maps.Keys(unreachable)), ", "), missing)
	}
	return nil
}
