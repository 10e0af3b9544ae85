package crdt

import (
	"errors"
	"fmt"
	"math"
	"strconv"
	"strings"
	"sync"
	"time"
)

// MaxDrift bounds how far ahead of local physical time a remote timestamp may
// be. Without a bound, one peer with a broken clock would drag every clock it
// talks to into the future for good.
const MaxDrift = time.Minute

// ErrClockDrift reports a remote timestamp further than MaxDrift ahead of local
// physical time. It is returned wrapped; test with errors.Is.
var ErrClockDrift = errors.New("crdt: remote clock too far ahead")

// Timestamp is a hybrid logical clock reading. Node breaks ties between
// distinct clocks so that the order is total across the system.
type Timestamp struct {
	Wall    int64  `json:"w"` // unix milliseconds
	Logical uint32 `json:"l"`
	Node    string `json:"n"`
}

// Compare orders by Wall, then Logical, then Node, returning -1, 0 or +1.
func (t Timestamp) Compare(u Timestamp) int {
	switch {
	case t.Wall < u.Wall:
		return -1
	case t.Wall > u.Wall:
		return 1
	case t.Logical < u.Logical:
		return -1
	case t.Logical > u.Logical:
		return 1
	}
	return strings.Compare(t.Node, u.Node)
}

// IsZero reports whether t is the zero Timestamp, which sorts before every
// reading a Clock can produce and therefore means "never".
func (t Timestamp) IsZero() bool { return t == Timestamp{} }

// After reports whether t sorts strictly after u.
func (t Timestamp) After(u Timestamp) bool { return t.Compare(u) > 0 }

// String renders t for logs and error messages as wall.logical@node.
func (t Timestamp) String() string {
	return strconv.FormatInt(t.Wall, 10) + "." + strconv.FormatUint(uint64(t.Logical), 10) + "@" + t.Node
}

// Clock is a hybrid logical clock: its readings track physical time where
// possible but never repeat or go backwards, even when the physical clock does
// or when a peer's clock runs ahead. It is safe for concurrent use.
type Clock struct {
	node string
	now  func() time.Time

	mu      sync.Mutex
	wall    int64
	logical uint32
}

// NewClock returns a clock stamping readings with node. now supplies physical
// time and is injectable for tests; nil means time.Now.
func NewClock(node string, now func() time.Time) *Clock {
	if now == nil {
		now = time.Now
	}
	return &Clock{node: node, now: now}
}

// Now returns a reading strictly after every earlier reading of c and every
// timestamp c has observed, with Wall never behind physical time.
func (c *Clock) Now() Timestamp {
	pt := c.now().UnixMilli()
	c.mu.Lock()
	defer c.mu.Unlock()
	switch {
	case pt > c.wall:
		c.wall, c.logical = pt, 0
	case c.logical == math.MaxUint32:
		// Borrowing a millisecond keeps readings increasing; Wall runs at
		// most a little ahead and physical time catches up.
		c.wall, c.logical = c.wall+1, 0
	default:
		c.logical++
	}
	return Timestamp{Wall: c.wall, Logical: c.logical, Node: c.node}
}

// Observe folds a remote timestamp into c so that every later Now is after it.
// A remote reading more than MaxDrift ahead of physical time is refused with
// ErrClockDrift and leaves c unchanged.
func (c *Clock) Observe(remote Timestamp) error {
	pt := c.now().UnixMilli()
	if ahead := remote.Wall - pt; ahead > MaxDrift.Milliseconds() {
		return fmt.Errorf("crdt: observe %s: %v ahead of local time, limit %v: %w",
			remote, time.Duration(ahead)*time.Millisecond, MaxDrift, ErrClockDrift)
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	// Node is ignored here: Now bumps Logical past the stored pair, which
	// puts the next reading after remote whatever the node names are.
	if remote.Wall > c.wall || (remote.Wall == c.wall && remote.Logical > c.logical) {
		c.wall, c.logical = remote.Wall, remote.Logical
	}
	return nil
}
