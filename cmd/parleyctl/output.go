package main

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"strings"
	"text/tabwriter"
	"time"
)

// printJSON writes an API reply indented, for -json.
func printJSON(w io.Writer, raw []byte) error {
	var buf bytes.Buffer
	if err := json.Indent(&buf, bytes.TrimSpace(raw), "", "  "); err != nil {
		_, err = w.Write(raw)
		return err
	}
	buf.WriteByte('\n')
	_, err := w.Write(buf.Bytes())
	return err
}

// table writes aligned columns: a header row, then rows.
func table(w io.Writer, header []string, rows [][]string) {
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, strings.Join(header, "\t"))
	for _, r := range rows {
		for i := range r {
			if r[i] == "" {
				r[i] = "-"
			}
		}
		fmt.Fprintln(tw, strings.Join(r, "\t"))
	}
	tw.Flush()
}

// fields writes "name  value" lines, aligned.
func fields(w io.Writer, kv ...string) {
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	for i := 0; i+1 < len(kv); i += 2 {
		v := kv[i+1]
		if v == "" {
			v = "-"
		}
		fmt.Fprintf(tw, "%s\t%s\n", kv[i], v)
	}
	tw.Flush()
}

func day(t time.Time) string {
	if t.IsZero() {
		return ""
	}
	return t.UTC().Format("2006-01-02 15:04")
}

func orNone(s, none string) string {
	if s == "" {
		return none
	}
	return s
}

// confirmation is a revocation's reach (node.Confirmation on the wire).
type confirmation struct {
	Index       uint64   `json:"index"`
	Confirmed   []string `json:"confirmed"`
	Unconfirmed []string `json:"unconfirmed"`
}

// print says which nodes confirmed a revocation.
func (c confirmation) print(w io.Writer, what string) {
	fmt.Fprintf(w, "%s at log index %d\n", what, c.Index)
	fmt.Fprintf(w, "confirmed by:   %s\n", orNone(strings.Join(c.Confirmed, ", "), "none"))
	if len(c.Unconfirmed) > 0 {
		fmt.Fprintf(w, "unconfirmed:    %s (unreachable; they refuse sessions and keys until they have applied it, the call waited out their lease)\n", strings.Join(c.Unconfirmed, ", "))
	} else {
		fmt.Fprintln(w, "every node has applied it: no node accepts what it revoked")
	}
}

// purgeConfirmation is which nodes confirmed a workspace's data purged
// from their stores (a deletion, or a pin to another region).
type purgeConfirmation struct {
	Confirmed   []string `json:"confirmed"`
	Unconfirmed []string `json:"unconfirmed"`
}

// print says which nodes purged the workspace's data.
func (c purgeConfirmation) print(w io.Writer) {
	fmt.Fprintf(w, "data purged by: %s\n", orNone(strings.Join(c.Confirmed, ", "), "none"))
	if len(c.Unconfirmed) > 0 {
		fmt.Fprintf(w, "not yet purged: %s (unreachable, or no node of the region to hand over to yet; each purges on its own when it can)\n", strings.Join(c.Unconfirmed, ", "))
	}
}

func yesNo(b bool) string {
	if b {
		return "yes"
	}
	return "no"
}
