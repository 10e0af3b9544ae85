package harness

import (
	"os"
	"runtime"
	"runtime/debug"
	"strings"
	"syscall"
	"testing"
	"time"
)

func TestParseProcStat(t *testing.T) {
	// Fields after the name: state ppid pgrp session tty tpgid flags minflt
	// cminflt majflt cmajflt utime stime cutime cstime priority nice
	// num_threads itrealvalue starttime vsize rss …
	rest := " S 1 2 3 0 -1 4194560 100 0 0 0 250 75 9 9 20 0 8 0 1234 100000000 2048 18446744073709551615"
	for _, tc := range []struct {
		name, in string
		cpu, rss float64
		err      bool
	}{
		{name: "plain", in: "42 (nats-server)" + rest, cpu: 3.25, rss: 2048 * 4096},
		{name: "spaces and parentheses in the name", in: "42 (my (odd) server)" + rest, cpu: 3.25, rss: 2048 * 4096},
		{name: "no name", in: "42 nats-server" + rest, err: true},
		{name: "short", in: "42 (x) S 1 2 3", err: true},
		{name: "not a number", in: "42 (x)" + strings.Replace(rest, " 250 ", " x ", 1), err: true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			st, err := ParseProcStat([]byte(tc.in), 4096)
			if tc.err {
				if err == nil {
					t.Fatalf("no error: %+v", st)
				}
				return
			}
			if err != nil || st.CPUSeconds != tc.cpu || st.RSS != tc.rss {
				t.Fatalf("got %+v %v, want cpu %g rss %g", st, err, tc.cpu, tc.rss)
			}
		})
	}
}

// TestReadProcStatSelf: this process's CPU grows by what the kernel
// says it spun (getrusage, another source), and its RSS grows by about
// what it touches. It spins until getrusage shows 0.3 s of CPU, however
// long a loaded machine takes to give it that.
func TestReadProcStatSelf(t *testing.T) {
	if runtime.GOOS != "linux" {
		t.Skip("/proc")
	}
	pid := os.Getpid()
	// Memory freed by an earlier run of the test (-count) would otherwise
	// still be resident, and reused.
	debug.FreeOSMemory()
	a, err := ReadProcStat(pid)
	if err != nil {
		t.Fatal(err)
	}
	r0 := rusageCPU(t)
	deadline := time.Now().Add(time.Minute)
	x := 0
	for rusageCPU(t)-r0 < 0.3 {
		for range 1_000_000 {
			x++
		}
		if time.Now().After(deadline) {
			t.Fatal("no 0.3 s of CPU in a minute")
		}
	}
	spun := rusageCPU(t) - r0
	mem := make([]byte, 64<<20)
	for i := 0; i < len(mem); i += 4096 {
		mem[i] = byte(i)
	}
	b, err := ReadProcStat(pid)
	if err != nil {
		t.Fatal(err)
	}
	runtime.KeepAlive(mem)
	// /proc counts in 10 ms ticks, getrusage finer: both are the whole
	// process's user + system time.
	if d := b.CPUSeconds - a.CPUSeconds; d < spun-0.1 {
		t.Errorf("spun %.2f s (getrusage), /proc's CPU grew %.2f s", spun, d)
	}
	if d := b.RSS - a.RSS; d < 48<<20 {
		t.Errorf("touched 64 MiB, RSS grew %.1f MiB", d/(1<<20))
	}
	if _, err := ReadProcStat(1 << 30); err == nil {
		t.Error("no error for a process that does not exist")
	}
}

func TestProcSampler(t *testing.T) {
	var cpu float64
	p := &ProcSampler{Read: func() (ProcStat, error) { cpu += 0.5; return ProcStat{CPUSeconds: cpu, RSS: cpu * 100}, nil }}
	t0 := time.Unix(1000, 0)
	for i := range 3 {
		if _, err := p.Sample(t0.Add(time.Duration(i) * time.Second)); err != nil {
			t.Fatal(err)
		}
	}
	p.SetRef(t0.Add(2 * time.Second))
	s := p.Series()
	if len(s) != 3 || s[0].T != -2 || s[2].T != 0 {
		t.Fatalf("times %+v", s)
	}
	if s[0].CPUPercent != 0 || s[1].CPUPercent != 50 || s[2].CPUPercent != 50 {
		t.Fatalf("cpu %+v", s)
	}
	if p.PeakRSS() != 150 {
		t.Fatalf("peak %g", p.PeakRSS())
	}
}

// rusageCPU is this process's user + system CPU from getrusage.
func rusageCPU(t *testing.T) float64 {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		t.Fatal(err)
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano()).Seconds()
}
