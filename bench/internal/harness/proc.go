package harness

import (
	"context"
	"errors"
	"fmt"
	"os"
	"strconv"
	"strings"
	"sync"
	"time"
)

// clockTicks is the kernel's USER_HZ, the unit of utime and stime in
// /proc/<pid>/stat: 100 on every Linux architecture Go supports.
const clockTicks = 100

// ProcStat is what /proc says about one process at one moment.
type ProcStat struct {
	CPUSeconds float64 // user + system, since the process started
	RSS        float64 // resident set, bytes
}

// ParseProcStat reads utime, stime and rss from the text of /proc/<pid>/stat.
// The command name (field 2) is in parentheses and may hold spaces or
// parentheses itself, so fields are counted after its last ')'.
func ParseProcStat(b []byte, pageSize int) (ProcStat, error) {
	s := string(b)
	i := strings.LastIndexByte(s, ')')
	if i < 0 {
		return ProcStat{}, errors.New("proc stat: no command name")
	}
	f := strings.Fields(s[i+1:])
	// After the name: state(3) ... utime(14) stime(15) ... rss(24).
	if len(f) < 22 {
		return ProcStat{}, fmt.Errorf("proc stat: %d fields after the command, want at least 22", len(f))
	}
	ut, err1 := strconv.ParseUint(f[11], 10, 64)
	st, err2 := strconv.ParseUint(f[12], 10, 64)
	rss, err3 := strconv.ParseInt(f[21], 10, 64)
	if err := errors.Join(err1, err2, err3); err != nil {
		return ProcStat{}, fmt.Errorf("proc stat: %w", err)
	}
	return ProcStat{CPUSeconds: float64(ut+st) / clockTicks, RSS: float64(max(rss, 0)) * float64(pageSize)}, nil
}

// ReadProcStat reads /proc/<pid>/stat.
func ReadProcStat(pid int) (ProcStat, error) {
	b, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/stat")
	if err != nil {
		return ProcStat{}, err
	}
	return ParseProcStat(b, os.Getpagesize())
}

// ProcSample is one point of a process's series: T seconds from the
// reference (the start of the send phase; negative before it).
type ProcSample struct {
	T          float64 `json:"t"`
	CPUSeconds float64 `json:"cpu_s"`
	CPUPercent float64 `json:"cpu_pct"` // since the previous sample; 100 = one core
	RSS        float64 `json:"rss"`
}

// ProcSampler reads a process's CPU and memory every Interval into a
// series. Its goroutine is owned by Run, which returns when ctx ends.
type ProcSampler struct {
	// Read returns the process's figures; ReadProcStat of a pid in use.
	Read func() (ProcStat, error)
	// Interval between samples. Zero: one second.
	Interval time.Duration

	mu      sync.Mutex
	ref     time.Time
	samples []ProcSample
	last    ProcStat
	lastAt  time.Time
}

// SetRef sets the time samples are measured from.
func (p *ProcSampler) SetRef(t time.Time) {
	p.mu.Lock()
	defer p.mu.Unlock()
	shift := t.Sub(p.ref).Seconds()
	if p.ref.IsZero() {
		shift = 0
	}
	for i := range p.samples {
		p.samples[i].T -= shift
	}
	p.ref = t
}

// Sample takes one sample now and returns it.
func (p *ProcSampler) Sample(now time.Time) (ProcStat, error) {
	st, err := p.Read()
	if err != nil {
		return st, err
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.ref.IsZero() {
		p.ref = now
	}
	s := ProcSample{T: now.Sub(p.ref).Seconds(), CPUSeconds: st.CPUSeconds, RSS: st.RSS}
	if !p.lastAt.IsZero() {
		if dt := now.Sub(p.lastAt).Seconds(); dt > 0 {
			s.CPUPercent = 100 * (st.CPUSeconds - p.last.CPUSeconds) / dt
		}
	}
	p.last, p.lastAt = st, now
	p.samples = append(p.samples, s)
	return st, nil
}

// Run samples until ctx ends.
func (p *ProcSampler) Run(ctx context.Context) {
	iv := p.Interval
	if iv <= 0 {
		iv = time.Second
	}
	t := time.NewTicker(iv)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case now := <-t.C:
			_, _ = p.Sample(now)
		}
	}
}

// Series returns a copy of the samples so far.
func (p *ProcSampler) Series() []ProcSample {
	p.mu.Lock()
	defer p.mu.Unlock()
	return append([]ProcSample(nil), p.samples...)
}

// PeakRSS is the highest RSS sampled.
func (p *ProcSampler) PeakRSS() float64 {
	p.mu.Lock()
	defer p.mu.Unlock()
	m := 0.0
	for _, s := range p.samples {
		m = max(m, s.RSS)
	}
	return m
}
