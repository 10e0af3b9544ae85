// Package peers runs one fan-out scenario (FanoutScenario, from
// bench/testdata/peers-*.yaml) against Parley and two pinned peers,
// nats-server and Centrifugo, side by side: `parley-bench peers` and
// `make bench-peers`.
//
// Each round (Run) starts a fresh server of each peer on loopback (Parley
// through parley/bench's StartLocal, the peers from the binaries
// bench/peers/fetch.sh builds into DefaultPeersDir), opens the subscribers
// on one room and publishes open loop from one publisher through the
// peer's driver: Parley's client protocol over WebSocket (agents of a
// workspace, a visitor sending), the NATS text protocol over
// nats-server's WebSocket listener (natsproto.go), Centrifugo's JSON
// client protocol with publishes through its HTTP API (centproto.go).
// It measures delivery latency from each message's due time, the
// server's CPU and memory from /proc, and returns a Result with every
// run, per-peer medians (PeerSummary) and Parley ÷ peer ratios
// (PeerRatio), written and read back as JSON. parley/bench/report
// renders it.
package peers
