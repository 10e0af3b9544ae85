// Package report renders what parley/bench and parley/bench/peers
// measured: the self-contained HTML report of a run (Run) and of a peers
// comparison (Peers), tables and inline SVG plots built with html/template
// (every string from a result is escaped; no script, no stylesheet or
// font from elsewhere), and the ratios of two runs' main figures as a
// text table (Compare, WriteComparison). It reads results and never
// runs anything: the runner and the peer drivers do not import it; the
// command (cmd/parley-bench) calls both.
package report
