// Package harness holds what the bench runner (parley/bench) and the peer
// drivers (parley/bench/peers) both need and neither owns: a process's
// CPU and memory from /proc and a sampler of them, the harness's own CPU,
// sleeping on a context, and number formatting for progress lines and
// reports. Nothing here knows Parley's protocol.
package harness
