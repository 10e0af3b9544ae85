package store

import (
	"cmp"
	"errors"
	"fmt"
	"slices"
	"strconv"
	"strings"

	"parley/ident"
)

// A conversation list is paged newest first: by Updated, latest first, then
// by ID, greatest first, so that every conversation has one place in the
// order and a page starts right after the last one of the page before.

// Cursor is where a page of conversations starts: right after the
// conversation with this Updated and ID in the list's order. The zero
// Cursor starts at the top.
type Cursor struct {
	Updated int64
	ID      string
}

// ErrBadCursor is ParseCursor's error for a string that no page returned.
var ErrBadCursor = errors.New("cursor: not one a page returned")

// String is the cursor as clients pass it back: "<updated>.<id>"; "" for
// the top.
func (c Cursor) String() string {
	if c.ID == "" {
		return ""
	}
	return strconv.FormatInt(c.Updated, 10) + "." + c.ID
}

// ParseCursor reads a Cursor's String; "" is the top.
func ParseCursor(s string) (Cursor, error) {
	if s == "" {
		return Cursor{}, nil
	}
	u, id, ok := strings.Cut(s, ".")
	n, err := strconv.ParseInt(u, 10, 64)
	if !ok || err != nil || n < 0 || !ident.ValidConversation(id) {
		return Cursor{}, fmt.Errorf("%q: %w", s, ErrBadCursor)
	}
	return Cursor{Updated: n, ID: id}, nil
}

// newer orders conversations as a list shows them.
func newer(a, b Conversation) int {
	if c := cmp.Compare(b.Updated, a.Updated); c != 0 {
		return c
	}
	return cmp.Compare(b.ID, a.ID)
}

// ConversationsPage returns up to limit conversations of a workspace held
// here (of one owner when owner is not ""), newest first, starting after
// the cursor, and the cursor of the next page ("" when this one is the
// last). It reads every conversation of the workspace (or owner) to sort
// them: a page costs as much as the whole list.
func (s *Store) ConversationsPage(ws, owner string, after Cursor, limit int) ([]Conversation, Cursor, error) {
	return s.ConversationsPageFunc(ws, owner, after, limit, nil)
}

// ConversationsPageFunc is ConversationsPage of the conversations keep
// keeps (every one when keep is nil): a filtered list pages in the same
// order, and its cursor is the last kept conversation's, so that a page
// asked with the same filter starts right after it.
func (s *Store) ConversationsPageFunc(ws, owner string, after Cursor, limit int, keep func(Conversation) bool) ([]Conversation, Cursor, error) {
	all, err := s.Conversations(ws, owner)
	if err != nil {
		return nil, Cursor{}, err
	}
	if keep != nil {
		all = slices.DeleteFunc(all, func(c Conversation) bool { return !keep(c) })
	}
	slices.SortFunc(all, newer)
	if after.ID != "" {
		at := Conversation{Updated: after.Updated, ID: after.ID}
		i, _ := slices.BinarySearchFunc(all, at, newer)
		if i < len(all) && all[i].ID == after.ID && all[i].Updated == after.Updated {
			i++
		}
		all = all[i:]
	}
	if limit <= 0 || len(all) <= limit {
		return all, Cursor{}, nil
	}
	page := all[:limit]
	last := page[len(page)-1]
	return page, Cursor{Updated: last.Updated, ID: last.ID}, nil
}
