// Package bench is the runner of parley-bench, the load, fault and scale
// harness for Parley nodes (bench/README.md says what it measures and
// how).
//
// A Scenario (LoadScenario) says how many virtual visitors and agents to
// connect, over WebSocket or WebTransport, the open-loop message rate
// (Schedule), reconnect storms, faults (kill, stop, partition) and an
// idle-connection scale test. Run drives it against the nodes it names,
// or against a local cluster of bin/parley processes that StartLocal
// starts on loopback through parley/internal/localcluster (in network
// namespaces when a fault partitions them), accounts for every acknowledged message across
// reconnects, restarts and nodes (Ledger, Accounting, the audit of every
// node's history), scrapes the nodes' /metrics, and returns a Result:
// HDR latency percentiles, throughput, counts, per-node series, events
// and a verdict, written and read back as JSON (WriteJSON, ReadResult).
//
// The package renders nothing: parley/bench/report turns a Result into
// the HTML report and compares two of them. parley/bench/peers runs the
// fan-out comparison with NATS and Centrifugo, starting Parley through
// StartLocal. Clients speak the wire protocol over the harness's own
// WebSocket client (bench/internal/rawws, for ws:// nodes; coder/websocket
// for wss://) or parley/gateway/client's WebTransport Conn, and keep their
// place in each conversation with its Cursor; the node's frames are read by an
// exact hand-written reader of the fields the harness uses (parseFrame),
// encoding/json for any other frame. e2e uses NetLab for its partition
// tests.
package bench
