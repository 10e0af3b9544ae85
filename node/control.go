package node

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync/atomic"
	"time"

	"parley/cluster"
	"parley/cluster/membership"
	"parley/cluster/nodelink"
	"parley/cluster/schema"
)

// control is the node's member of the Raft control plane: it opens it,
// joins the cluster or bootstraps one, keeps this node's registration
// current and answers other nodes' internal requests.
type control struct {
	cfg     Config
	log     *slog.Logger
	c       *cluster.Cluster
	key     clusterKey
	link    *nodelink.Link
	peers   *peerClient
	apiAddr string
	// ready is set once this node is a registered member with a leader.
	ready atomic.Bool
	// freshAt is when the last completed catch-up round began (unix ns).
	freshAt atomic.Int64
	// gossip is set once gossip runs (openGossip): it tells the members'
	// protocol versions (versions).
	gossip atomic.Pointer[membership.Membership]
}

// versions is the protocol version of every node gossip sees alive, by
// ID (cluster.Config.Versions): none before gossip runs.
func (ctl *control) versions() map[string]int {
	out := map[string]int{}
	if m := ctl.gossip.Load(); m != nil {
		for _, mb := range m.Members() {
			out[mb.ID] = mb.Version()
		}
	}
	return out
}

// openControl opens the Raft member. apiAddr is this node's HTTP address as
// other nodes reach it; key is the cluster key (nodeClusterKey).
func openControl(cfg Config, log *slog.Logger, key clusterKey, apiAddr string, obs cluster.Observer) (*control, error) {
	dir := filepath.Join(cfg.DataDir, "raft")
	raftAddr, advertise, err := raftAddrs(cfg, dir)
	if err != nil {
		return nil, err
	}
	// A -join list may name this node itself (every node of a deployment
	// given one list, deploy/helm): that entry is skipped, so the node it
	// names bootstraps when the list names no other.
	self := advertise
	if self == "" {
		self = raftAddr
	}
	cfg.Join = dropSelf(cfg.Join, self)
	bootstrap := len(cfg.Join) == 0
	// Every byte between nodes but gossip goes through the link: mutual
	// TLS under the CA only holders of the cluster key can compute.
	members := &memberIPs{}
	link, err := nodelink.Listen(nodelink.Config{Seed: key.linkSeed(), NodeID: cfg.NodeID, Bind: raftAddr, Advertise: advertise, Logger: log, Member: members.has,
		Version: schema.ProtocolVersion, MinVersion: schema.MinProtocolVersion})
	if err != nil {
		return nil, fmt.Errorf("node link on %s: %w", raftAddr, err)
	}
	ctl := &control{cfg: cfg, log: log, key: key, link: link, peers: newPeerClient(cfg.NodeID, key.nodeKey(), link, faultDial(cfg.faults)), apiAddr: apiAddr}
	fwd := &httpForwarder{peers: ctl.peers}
	c, err := cluster.Open(cluster.Config{
		NodeID:             cfg.NodeID,
		Region:             cfg.Region,
		Stream:             link.Stream(nodelink.ProtoRaft),
		DataDir:            dir,
		Bootstrap:          bootstrap,
		Voter:              cfg.Voter != voterNo,
		Logger:             log,
		MasterKey:          key.masterKey(),
		Forwarder:          fwd,
		Observer:           obs,
		Versions:           ctl.versions,
		SnapshotThreshold:  cfg.RaftSnapshotThreshold,
		TrailingLogs:       cfg.RaftTrailingLogs,
		PasswordIterations: cfg.passwordIterations,
		// Followers learn that an entry committed from the leader's next
		// message: at most this long when it is otherwise idle. A write
		// through a follower waits for that (read-your-writes), and so does
		// a revocation's confirmation; 10ms keeps both short for about a
		// hundred small messages a second per follower when idle.
		CommitTimeout: 10 * time.Millisecond,
	})
	if err != nil {
		link.Close()
		return nil, fmt.Errorf("control plane: %w", err)
	}
	ctl.c = c
	members.c.Store(c)
	// The next start binds the same port, so the address peers know stays
	// right.
	if err := os.WriteFile(filepath.Join(dir, "addr"), []byte(c.Addr()+"\n"), 0o600); err != nil {
		ctl.close()
		return nil, err
	}
	return ctl, nil
}

// dropSelf removes from join the entries that name self (host:port): the
// same text, or the same port on a host that resolves to self's host or its
// addresses (a StatefulSet's pod named by DNS, advertising its IP). A name
// that does not resolve within 5s is kept.
func dropSelf(join []string, self string) []string {
	sh, sp, err := net.SplitHostPort(self)
	if err != nil {
		return join
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	own := map[string]bool{sh: true}
	if net.ParseIP(sh) == nil {
		if addrs, err := net.DefaultResolver.LookupHost(ctx, sh); err == nil {
			for _, a := range addrs {
				own[a] = true
			}
		}
	}
	var out []string
	for _, a := range join {
		h, p, err := net.SplitHostPort(a)
		if err == nil && p == sp {
			if own[h] {
				continue
			}
			if net.ParseIP(h) == nil {
				addrs, err := net.DefaultResolver.LookupHost(ctx, h)
				if err == nil && slices.ContainsFunc(addrs, func(x string) bool { return own[x] }) {
					continue
				}
			}
		}
		out = append(out, a)
	}
	return out
}

// raftAddrs picks the Raft bind and advertise addresses: the flag, else the
// address of the last start, else the HTTP host on a free port.
func raftAddrs(cfg Config, dir string) (bind, advertise string, err error) {
	bind = cfg.RaftAddr
	if bind == "" {
		if b, err := os.ReadFile(filepath.Join(dir, "addr")); err == nil {
			bind = strings.TrimSpace(string(b))
		}
	}
	if bind == "" {
		host, _, _ := net.SplitHostPort(cfg.HTTPAddr)
		bind = net.JoinHostPort(host, "0")
	}
	host, port, err := net.SplitHostPort(bind)
	if err != nil {
		return "", "", fmt.Errorf("raft address %q: %w", bind, err)
	}
	// With -advertise, other nodes dial that host (a NAT, a proxy), at the
	// port bound.
	if cfg.Advertise != "" {
		if port == "0" {
			return "", "", fmt.Errorf("raft address %s: -advertise needs a fixed port", bind)
		}
		return bind, net.JoinHostPort(cfg.Advertise, port), nil
	}
	if ip := net.ParseIP(host); host == "" || (ip != nil && ip.IsUnspecified()) {
		return "", "", fmt.Errorf("raft address %s binds every interface: give -advertise and a fixed port", bind)
	}
	return bind, "", nil
}

// advertiseAddr turns a bound address into one other nodes can dial.
func advertiseAddr(bound, advertise string) string {
	host, port, err := net.SplitHostPort(bound)
	if err != nil {
		return bound
	}
	if ip := net.ParseIP(host); ip != nil && ip.IsUnspecified() {
		if advertise == "" {
			advertise = "127.0.0.1"
		}
		return net.JoinHostPort(advertise, port)
	}
	return bound
}

// run joins (when told to), registers this node with its gossip address,
// then calls onReady once; it returns when ctx ends.
func (ctl *control) run(ctx context.Context, gossipAddr string, onReady func(context.Context) error) error {
	backoff := 100 * time.Millisecond
	for {
		err := ctl.start(ctx, gossipAddr)
		if err == nil {
			break
		}
		if ctx.Err() != nil {
			return nil
		}
		ctl.log.Warn("control plane: not a member yet, retrying", "err", err, "in", backoff)
		select {
		case <-ctx.Done():
			return nil
		case <-time.After(backoff):
		}
		backoff = min(2*backoff, 2*time.Second)
	}
	if onReady != nil {
		if err := onReady(ctx); err != nil && ctx.Err() == nil {
			return err
		}
	}
	ctl.ready.Store(true)
	ctl.log.Info("control plane: member", "leader", ctl.c.Stats().LeaderID, "raft", ctl.c.Addr())
	return nil
}

// start makes this node a registered member: it asks a member to add it
// (every start, so a changed address is corrected), waits for a leader and
// records its addresses in the replicated state.
func (ctl *control) start(ctx context.Context, gossipAddr string) error {
	if len(ctl.cfg.Join) > 0 && !ctl.member() {
		if err := ctl.join(ctx); err != nil {
			return err
		}
	}
	wctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	if err := ctl.c.WaitLeader(wctx); err != nil {
		return err
	}
	if _, err := ctl.c.RegisterSelf(wctx, cluster.NodeInfo{APIAddr: ctl.apiAddr, GossipAddr: gossipAddr, NoVote: ctl.cfg.Voter == voterNo}); err != nil {
		return fmt.Errorf("register: %w", err)
	}
	return nil
}

// member says whether the Raft configuration this node knows already lists
// it at its current address: a restarted member needs no join.
func (ctl *control) member() bool {
	for _, m := range ctl.c.Members() {
		if m.ID == ctl.cfg.NodeID && m.Addr == ctl.c.Addr() {
			return true
		}
	}
	return false
}

// joinRequest is what a node sends to be added to the cluster.
type joinRequest struct {
	ID       string `json:"id"`
	RaftAddr string `json:"raft_addr"`
	APIAddr  string `json:"api_addr"`
	Region   string `json:"region,omitempty"`
	Voter    string `json:"voter"`
}

// joinReply answers a joinRequest; LeaderAddr names the leader's link
// address, where to ask instead when the node asked is not the leader.
type joinReply struct {
	Voter      bool   `json:"voter"`
	Code       string `json:"code,omitempty"`
	Error      string `json:"error,omitempty"`
	LeaderAddr string `json:"leader_addr,omitempty"`
}

// join asks the configured members, and the leader they name, to add this
// node.
func (ctl *control) join(ctx context.Context) error {
	req, _ := json.Marshal(joinRequest{ID: ctl.cfg.NodeID, RaftAddr: ctl.c.Addr(), APIAddr: ctl.apiAddr, Region: ctl.cfg.Region, Voter: ctl.cfg.Voter})
	var errs []error
	targets := append([]string(nil), ctl.cfg.Join...)
	for i := 0; i < len(targets) && i < 8; i++ {
		if targets[i] == ctl.c.Addr() {
			continue
		}
		rctx, cancel := context.WithTimeout(ctx, 15*time.Second)
		b, err := ctl.peers.Post(rctx, targets[i], pathJoin, req)
		cancel()
		var rep joinReply
		if b != nil {
			json.Unmarshal(b, &rep)
		}
		switch {
		case err == nil:
			ctl.log.Info("control plane: joined", "via", targets[i], "voter", rep.Voter)
			return nil
		case rep.LeaderAddr != "":
			targets = append(targets, rep.LeaderAddr)
		}
		errs = append(errs, err)
	}
	return fmt.Errorf("join (-join takes members' -raft-addr link addresses): %w", errors.Join(errs...))
}

// handleJoin adds a node to the Raft configuration, as a voter or not (see
// Config.Voter), and registers it. Only the leader can; another node answers
// with the leader's link address.
func (ctl *control) handleJoin(ctx context.Context, body []byte) (joinReply, int) {
	var req joinRequest
	if err := json.Unmarshal(body, &req); err != nil {
		return joinReply{Code: "invalid", Error: "join: " + err.Error()}, 400
	}
	info := cluster.NodeInfo{ID: req.ID, Region: req.Region, RaftAddr: req.RaftAddr, APIAddr: req.APIAddr, NoVote: req.Voter == voterNo}
	if !ctl.c.IsLeader() {
		_, leaderAddr := ctl.c.Leader()
		return joinReply{Code: "not_leader", Error: "not the leader", LeaderAddr: leaderAddr}, 503
	}
	voter := ctl.wantsVote(req)
	var err error
	if voter {
		err = ctl.c.AddVoter(ctx, req.ID, req.RaftAddr)
	} else {
		err = ctl.c.AddNonvoter(ctx, req.ID, req.RaftAddr)
	}
	if err == nil {
		_, err = ctl.c.Apply(ctx, cluster.RegisterNode{Node: info})
	}
	if err != nil {
		status := 500
		if errors.Is(err, cluster.ErrInvalid) {
			status = 400
		}
		return joinReply{Code: cluster.ErrorCode(err), Error: err.Error()}, status
	}
	ctl.log.Info("control plane: node added", "id", req.ID, "raft", req.RaftAddr, "region", req.Region, "voter", voter)
	return joinReply{Voter: voter}, 200
}

// wantsVote decides a joining node's suffrage: asked for, or, on auto, a
// vote while there are fewer than 3 voters, or fewer than 5 and none in the
// node's region, so voters spread across regions. A member keeps the
// suffrage it has.
func (ctl *control) wantsVote(req joinRequest) bool {
	var regions []string
	for _, m := range ctl.c.Members() {
		if m.ID == req.ID {
			if req.Voter == voterAuto {
				return m.Voter
			}
			continue
		}
		if m.Voter {
			regions = append(regions, m.Region)
		}
	}
	return wantsVoteFrom(regions, req)
}

// wantsVoteFrom decides given the regions of the other voters: on auto, a
// vote while there are fewer than 3; the leader's rebalancing raises the
// voters to 5 in pairs, so that their number stays odd.
func wantsVoteFrom(voterRegions []string, req joinRequest) bool {
	switch req.Voter {
	case voterYes:
		return true
	case voterNo:
		return false
	}
	return len(voterRegions) < 3
}

// rebalanceEvery is how often the leader checks the number of voters.
const rebalanceEvery = 5 * time.Second

// rebalance runs on every node and acts on the leader: while there are 3
// voters and at least 2 alive non-voters that did not ask to stay so, it
// promotes two, preferring regions without a voter, to reach 5. It never
// demotes or removes: that is an operator's decision (parleyctl).
func (ctl *control) rebalance(ctx context.Context, alive func(id string) bool) error {
	t := time.NewTicker(rebalanceEvery)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return nil
		case <-t.C:
		}
		if !ctl.c.IsLeader() {
			continue
		}
		promote := promotions(ctl.c.Members(), alive, ctl.noVote)
		for _, m := range promote {
			if err := ctl.c.AddVoter(ctx, m.ID, m.Addr); err != nil {
				ctl.log.Warn("control plane: promoting a voter failed", "node", m.ID, "err", err)
				break
			}
			ctl.log.Info("control plane: promoted to voter", "node", m.ID, "region", m.Region)
		}
	}
}

// noVote says whether a node asked to stay a non-voter.
func (ctl *control) noVote(id string) bool {
	n, err := ctl.c.Node(id)
	return err != nil || n.NoVote
}

// promotions picks the non-voters to promote: none unless there are exactly
// 3 voters, all alive, and 2 candidates; candidates in regions without a
// voter first.
func promotions(members []cluster.Member, alive func(string) bool, stay func(string) bool) []cluster.Member {
	var voters, cands []cluster.Member
	for _, m := range members {
		switch {
		case m.Voter:
			voters = append(voters, m)
		case alive(m.ID) && !stay(m.ID):
			cands = append(cands, m)
		}
	}
	if len(voters) != 3 || len(cands) < 2 {
		return nil
	}
	for _, v := range voters {
		if !alive(v.ID) {
			return nil
		}
	}
	regions := map[string]bool{}
	for _, v := range voters {
		regions[v.Region] = true
	}
	slices.SortStableFunc(cands, func(a, b cluster.Member) int {
		ra, rb := regions[a.Region], regions[b.Region]
		switch {
		case !ra && rb:
			return -1
		case ra && !rb:
			return 1
		}
		return strings.Compare(a.ID, b.ID)
	})
	// Two in different regions if the candidates allow.
	first := cands[0]
	for _, c := range cands[1:] {
		if c.Region != first.Region || c == cands[len(cands)-1] {
			return []cluster.Member{first, c}
		}
	}
	return cands[:2]
}

// fresh says whether this node's copy of the control plane may be trusted
// with operator credentials: within the lease it has proved that it applied
// everything committed before some moment (keepFresh), so a revocation it
// has not applied was committed less than a lease ago, and the revoking
// call waits out the lease for any node it could not confirm. Hearing from
// the leader is not enough: heartbeats resume after a partition before the
// entries missed during it are replicated.
func (ctl *control) fresh() bool {
	at := ctl.freshAt.Load()
	return at != 0 && time.Since(time.Unix(0, at)) < ctl.cfg.Lease
}

// keepFresh runs catch-up rounds until ctx ends: ask the leader for its
// commit index (the leader confirms its leadership with a quorum), wait
// until this node has applied it and, when derived is given, until what
// the node derives from the state up to it is done (the erasures of its
// store), then mark the node fresh as of the round's start.
func (ctl *control) keepFresh(ctx context.Context, derived func(ctx context.Context, index uint64) error) error {
	every := min(ctl.cfg.Lease/4, 250*time.Millisecond)
	for {
		start := time.Now()
		rctx, cancel := context.WithTimeout(ctx, ctl.cfg.Lease)
		idx, err := ctl.leaderCommitIndex(rctx)
		if err == nil {
			err = ctl.c.WaitApplied(rctx, idx)
		}
		if err == nil && derived != nil {
			err = derived(rctx, idx)
		}
		cancel()
		if err == nil {
			ctl.freshAt.Store(start.UnixNano())
		}
		wait := every
		if !ctl.fresh() {
			wait = 50 * time.Millisecond // starting, or cut off: try harder
		}
		select {
		case <-ctx.Done():
			return nil
		case <-time.After(wait):
		}
	}
}

// leaderCommitIndex asks the leader (this node, or over the internal API)
// for its commit index.
func (ctl *control) leaderCommitIndex(ctx context.Context) (uint64, error) {
	if ctl.c.IsLeader() {
		return ctl.c.LeaderCommitIndex(ctx)
	}
	_, leader := ctl.c.Leader()
	if leader == "" {
		return 0, errors.New("no leader known")
	}
	b, err := ctl.peers.Post(ctx, leader, pathReadIndex, nil)
	if err != nil {
		return 0, err
	}
	var rep waitRequest
	if err := json.Unmarshal(b, &rep); err != nil || rep.Index == 0 {
		return 0, fmt.Errorf("read index from %s: %q", leader, b)
	}
	return rep.Index, nil
}

// close stops the Raft member, then the link under it.
func (ctl *control) close() error {
	err := ctl.c.Close()
	return errors.Join(err, ctl.link.Close())
}

// Region is the region ws is pinned to: "" when unpinned or unknown here
// (replication.Control).
func (ctl *control) Region(ws string) string {
	w, err := ctl.c.Workspace(ws)
	if err != nil {
		return ""
	}
	return w.Region
}

// Workspaces are the IDs of the workspaces the control plane holds
// (replication.Control).
func (ctl *control) Workspaces() []string {
	var out []string
	for _, w := range ctl.c.Workspaces() {
		out = append(out, w.ID)
	}
	return out
}

// Registered are the nodes registered in the control plane
// (replication.Control).
func (ctl *control) Registered() []membership.Member {
	var out []membership.Member
	for _, n := range ctl.c.Nodes() {
		out = append(out, membership.Member{ID: n.ID, Region: n.Region, HTTPAddr: n.APIAddr, RaftAddr: n.RaftAddr})
	}
	return out
}

// Ready says whether this node is a registered member with a leader
// (replication.Control).
func (ctl *control) Ready() bool { return ctl.ready.Load() }

// caughtUpSinceStart says whether this node has applied, since it started,
// every erasure committed before some moment (a catch-up round completes
// only once the erasures up to its index are applied here): until then it
// may not know of an erasure, and takes no conversation it does not hold
// from a peer.
func (ctl *control) caughtUpSinceStart() bool { return ctl.freshAt.Load() != 0 }

// assignee is the operator a conversation is assigned to, "" when none
// (gateway.Config.Assignee).
func (ctl *control) assignee(ws, conv string) string {
	a, err := ctl.c.Assignment(ws, conv)
	if err != nil {
		return ""
	}
	return a.Operator
}

// internalMessagesVersion is the protocol version whose nodes keep internal
// messages (notes, inbox changes, the visitor's context) from visitors: a
// node of version 1 would hand them on as messages.
const internalMessagesVersion = 2

// internalMessages says whether internal messages may be written
// (gateway.Config.InternalMessages): not while a member of the cluster may
// run an older version (cluster.ErrClusterUpgrading). A member out of
// sight counts at the version it was last seen at, so that notes and
// inbox changes go on on both sides of a partition.
func (ctl *control) internalMessages() error {
	return ctl.c.RequireLastSeen("an internal message (a note, an inbox change, the visitor's context)", internalMessagesVersion)
}
