// Package nfqdelay delays, and drops a share of, the packets that nftables
// rules of a network namespace send to an NFQUEUE: each packet is held for
// Config.Delay, then let through, in the order it came. The kernel here has
// no netem; this is the lab's link between regions (make lab, e2e/lab_test.go).
//
// It holds packets in the kernel, not in Go: only their ids cross netlink
// (copy mode "meta"), and a verdict is given when a packet's time has come.
// Rules should queue with "bypass", so that traffic passes undelayed while
// no delayer listens (before Start, after Close).
//
// It needs root (CAP_NET_ADMIN) in the namespace it serves.
package nfqdelay

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"os"
	"sync"
	"sync/atomic"
	"time"

	nfqueue "github.com/florianl/go-nfqueue"
	"github.com/mdlayher/netlink"
)

// Config says which queue to serve and how.
type Config struct {
	// NetNS is the path of the network namespace whose queue this serves
	// (/var/run/netns/NAME). Empty: the caller's.
	NetNS string
	// Queue is the queue number the namespace's rules send packets to.
	Queue uint16
	// Delay is how long each packet is held before it is let through.
	// Zero: none (packets are only counted, and dropped at Loss).
	Delay time.Duration
	// Loss is the fraction of packets dropped instead, 0 to 1.
	Loss float64
	// MaxQueue is how many packets the kernel holds for this queue; past
	// it, packets pass undelayed (fail-open). Zero: 16384.
	MaxQueue uint32
}

// Stats counts packets since Start.
type Stats struct {
	Delayed, Dropped uint64
}

// Delayer serves one queue. Its goroutines (netlink's reader, which hands
// each packet to the queue of held ones, and the releaser) end with Close
// or with the context given to Start.
type Delayer struct {
	cfg    Config
	nf     *nfqueue.Nfqueue
	held   chan held
	cancel context.CancelFunc
	done   chan struct{}
	close  sync.Once

	delayed, dropped atomic.Uint64
	verdictErr       atomic.Pointer[error] // the first verdict that failed
}

type held struct {
	id  uint32
	due time.Time
}

// Start binds the queue in cfg.NetNS and serves it until Close or ctx ends.
func Start(ctx context.Context, cfg Config) (*Delayer, error) {
	if cfg.Loss < 0 || cfg.Loss > 1 || cfg.Delay < 0 {
		return nil, fmt.Errorf("nfqdelay: delay %v and loss %v: want a delay ≥ 0 and a loss in [0, 1]", cfg.Delay, cfg.Loss)
	}
	if cfg.MaxQueue == 0 {
		cfg.MaxQueue = 1 << 14
	}
	ncfg := nfqueue.Config{
		NfQueue:     cfg.Queue,
		MaxQueueLen: cfg.MaxQueue,
		Copymode:    nfqueue.NfQnlCopyMeta,
		// GSO: large packets are queued whole, not cut up first; fail-open:
		// a full queue lets packets through rather than dropping them.
		Flags:        nfqueue.NfQaCfgFlagGSO | nfqueue.NfQaCfgFlagFailOpen,
		WriteTimeout: time.Second,
	}
	if cfg.NetNS != "" {
		f, err := os.Open(cfg.NetNS)
		if err != nil {
			return nil, fmt.Errorf("nfqdelay: network namespace: %w", err)
		}
		// The netlink socket is made inside the namespace and stays
		// there: the descriptor is needed only until then.
		defer f.Close()
		ncfg.NetNS = int(f.Fd())
	}
	nf, err := nfqueue.Open(&ncfg)
	if err != nil {
		return nil, fmt.Errorf("nfqdelay: open queue %d: %w", cfg.Queue, err)
	}
	// A burst larger than the socket's buffer must not end the reader.
	if err := nf.SetOption(netlink.NoENOBUFS, true); err != nil {
		nf.Close()
		return nil, fmt.Errorf("nfqdelay: %w", err)
	}
	ctx, cancel := context.WithCancel(ctx)
	d := &Delayer{cfg: cfg, nf: nf, held: make(chan held, cfg.MaxQueue), cancel: cancel, done: make(chan struct{})}
	err = nf.RegisterWithErrorFunc(ctx, d.hook, func(err error) int {
		if ctx.Err() != nil {
			return 1
		}
		return 0 // a read error (a timeout, a lost burst): go on reading
	})
	if err != nil {
		cancel()
		nf.Close()
		return nil, fmt.Errorf("nfqdelay: bind queue %d: %w", cfg.Queue, err)
	}
	go d.release(ctx)
	return d, nil
}

// hook runs on netlink's reader for each packet queued: it drops the
// packet at the configured rate, or queues it to be let through later.
func (d *Delayer) hook(a nfqueue.Attribute) int {
	if a.PacketID == nil {
		return 0
	}
	id := *a.PacketID
	if d.cfg.Loss > 0 && rand.Float64() < d.cfg.Loss {
		d.dropped.Add(1)
		d.verdict(id, nfqueue.NfDrop)
		return 0
	}
	d.delayed.Add(1)
	select {
	case d.held <- held{id: id, due: time.Now().Add(d.cfg.Delay)}:
	default: // more held than the kernel queue holds: cannot happen; let it through
		d.verdict(id, nfqueue.NfAccept)
	}
	return 0
}

// release lets each held packet through once its time has come, in the
// order they came (every packet is held alike, so their times are in
// order too).
func (d *Delayer) release(ctx context.Context) {
	defer close(d.done)
	t := time.NewTimer(time.Hour)
	defer t.Stop()
	for {
		var h held
		select {
		case <-ctx.Done():
			return
		case h = <-d.held:
		}
		if wait := time.Until(h.due); wait > 0 {
			t.Reset(wait)
			select {
			case <-ctx.Done():
				return
			case <-t.C:
			}
		}
		d.verdict(h.id, nfqueue.NfAccept)
	}
}

func (d *Delayer) verdict(id uint32, v int) {
	if err := d.nf.SetVerdict(id, v); err != nil {
		d.verdictErr.CompareAndSwap(nil, &err)
	}
}

// Stats counts the packets delayed and dropped so far.
func (d *Delayer) Stats() Stats {
	return Stats{Delayed: d.delayed.Load(), Dropped: d.dropped.Load()}
}

// Close stops serving the queue (packets then pass undelayed where the
// rules say bypass) and reports the first verdict the kernel refused, if
// any.
func (d *Delayer) Close() error {
	var err error
	d.close.Do(func() {
		d.cancel()
		<-d.done
		err = d.nf.Close()
		if p := d.verdictErr.Load(); p != nil {
			err = errors.Join(err, fmt.Errorf("nfqdelay: a verdict failed: %w", *p))
		}
	})
	return err
}
