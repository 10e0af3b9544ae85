package bench

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"math"
	"net/http"
	"sort"
	"strconv"
	"strings"
	"sync"
	"time"
)

// NodeSample is one scrape of one node's /metrics.
type NodeSample struct {
	T          float64 `json:"t"` // seconds since the send phase began
	OK         bool    `json:"ok"`
	CPUSeconds float64 `json:"cpu_seconds,omitempty"`
	CPUPercent float64 `json:"cpu_percent,omitempty"` // since the previous sample; 100 = one core
	RSS        float64 `json:"rss_bytes,omitempty"`
	Conns      float64 `json:"connections,omitempty"`
	Goroutines float64 `json:"goroutines,omitempty"`
	HeapInuse  float64 `json:"heap_inuse_bytes,omitempty"`
}

// NodeSeries is everything scraped from one node.
type NodeSeries struct {
	Node    string       `json:"node"`
	Samples []NodeSample `json:"samples"`
	// Summary over the send phase.
	CPUSecondsSend float64 `json:"cpu_seconds_send"`
	PeakRSS        float64 `json:"peak_rss_bytes"`
	PeakConns      float64 `json:"peak_connections"`
	Failed         int     `json:"failed_scrapes"`
	// The node's own histograms at the end of the run (since its start).
	Histograms map[string]PromHist `json:"histograms,omitempty"`
}

// scraped are the series the harness reads; the rest is skipped.
var scraped = map[string]bool{
	"process_cpu_seconds_total":     true,
	"process_resident_memory_bytes": true,
	"parley_connections":            true,
	"go_goroutines":                 true,
	"go_memstats_heap_inuse_bytes":  true,
}

// ParseMetrics reads Prometheus text exposition and sums, per metric name,
// the samples of the names it is asked for (labels are summed over).
func ParseMetrics(r io.Reader, want map[string]bool) (map[string]float64, error) {
	out := map[string]float64{}
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 64<<10), 1<<20)
	for sc.Scan() {
		line := sc.Text()
		if line == "" || line[0] == '#' {
			continue
		}
		name := line
		if i := strings.IndexAny(line, "{ "); i >= 0 {
			name = line[:i]
		}
		if want != nil && !want[name] {
			continue
		}
		rest := line[len(name):]
		if strings.HasPrefix(rest, "{") {
			// Label values may hold spaces or braces inside quotes.
			end, inq := -1, false
			for i := 1; i < len(rest); i++ {
				switch c := rest[i]; {
				case c == '\\' && inq:
					i++
				case c == '"':
					inq = !inq
				case c == '}' && !inq:
					end = i
				}
				if end >= 0 {
					break
				}
			}
			if end < 0 {
				return nil, fmt.Errorf("metrics: unterminated labels in %q", line)
			}
			rest = rest[end+1:]
		}
		fields := strings.Fields(rest)
		if len(fields) == 0 {
			return nil, fmt.Errorf("metrics: no value in %q", line)
		}
		v, err := strconv.ParseFloat(fields[0], 64)
		if err != nil {
			return nil, fmt.Errorf("metrics: value of %q: %v", name, err)
		}
		out[name] += v
	}
	return out, sc.Err()
}

// scraper reads every node's /metrics once a second.
type scraper struct {
	client *http.Client
	nodes  []string
	mu     sync.Mutex
	raw    [][]rawSample
	failed []int
}

type rawSample struct {
	at time.Time
	NodeSample
}

func newScraper(nodes []string) *scraper {
	return &scraper{client: &http.Client{Timeout: 900 * time.Millisecond}, nodes: nodes,
		raw: make([][]rawSample, len(nodes)), failed: make([]int, len(nodes))}
}

// scrapeOne reads one node now.
func (s *scraper) scrapeOne(ctx context.Context, i int) (map[string]float64, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, strings.TrimRight(s.nodes[i], "/")+"/metrics", nil)
	if err != nil {
		return nil, err
	}
	resp, err := s.client.Do(req)
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return nil, fmt.Errorf("%s/metrics: %s", s.nodes[i], resp.Status)
	}
	return ParseMetrics(resp.Body, scraped)
}

// sample scrapes every node once, in parallel, records the samples and
// returns them (CPUPercent since each node's previous good sample).
func (s *scraper) sample(ctx context.Context) []NodeSample {
	now := time.Now()
	out := make([]rawSample, len(s.nodes))
	var wg sync.WaitGroup
	for i := range s.nodes {
		wg.Add(1)
		go func(i int) {
			defer wg.Done()
			m, err := s.scrapeOne(ctx, i)
			smp := rawSample{at: now, NodeSample: NodeSample{OK: err == nil}}
			if err == nil {
				smp.CPUSeconds = m["process_cpu_seconds_total"]
				smp.RSS = m["process_resident_memory_bytes"]
				smp.Conns = m["parley_connections"]
				smp.Goroutines = m["go_goroutines"]
				smp.HeapInuse = m["go_memstats_heap_inuse_bytes"]
			}
			out[i] = smp
		}(i)
	}
	wg.Wait()
	s.mu.Lock()
	defer s.mu.Unlock()
	ret := make([]NodeSample, len(out))
	for i := range out {
		if out[i].OK {
			// CPU rate since the previous sample, when that one was good and
			// of the same process (the counter did not go back).
			if n := len(s.raw[i]); n > 0 {
				p := s.raw[i][n-1]
				if dt := out[i].at.Sub(p.at).Seconds(); p.OK && dt > 0 && out[i].CPUSeconds >= p.CPUSeconds {
					out[i].CPUPercent = round3((out[i].CPUSeconds - p.CPUSeconds) / dt * 100)
				}
			}
		} else {
			s.failed[i]++
		}
		s.raw[i] = append(s.raw[i], out[i])
		ret[i] = out[i].NodeSample
	}
	return ret
}

// run samples every second until ctx ends; latest receives each round.
func (s *scraper) run(ctx context.Context, latest func([]NodeSample)) {
	t := time.NewTicker(time.Second)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
			smp := s.sample(ctx)
			if latest != nil {
				latest(smp)
			}
		}
	}
}

// result returns the series with times relative to the send phase's start
// and the send phase's CPU seconds, peak memory and connections.
func (s *scraper) result(sendStart, sendEnd time.Time) []NodeSeries {
	s.mu.Lock()
	defer s.mu.Unlock()
	out := make([]NodeSeries, len(s.nodes))
	for i, node := range s.nodes {
		ser := NodeSeries{Node: node, Failed: s.failed[i]}
		var prev *rawSample
		for j := range s.raw[i] {
			r := s.raw[i][j]
			r.T = round3(r.at.Sub(sendStart).Seconds())
			ser.Samples = append(ser.Samples, r.NodeSample)
			if !r.OK {
				continue
			}
			ser.PeakRSS = max(ser.PeakRSS, r.RSS)
			ser.PeakConns = max(ser.PeakConns, r.Conns)
			// CPU used during the send phase: increments between good
			// samples that end inside it (+1 s for the last one); after a
			// restart the counter starts again from zero.
			if prev != nil && r.at.After(sendStart) && !prev.at.After(sendEnd) {
				if d := r.CPUSeconds - prev.CPUSeconds; d >= 0 {
					ser.CPUSecondsSend += d
				} else {
					ser.CPUSecondsSend += r.CPUSeconds
				}
			}
			prev = &s.raw[i][j]
		}
		ser.CPUSecondsSend = round3(ser.CPUSecondsSend)
		out[i] = ser
	}
	return out
}

// PromHist summarises a Prometheus histogram scraped from a node: quantiles
// are interpolated within buckets, so they are as coarse as the buckets.
// Seconds are converted to milliseconds (Unit says which).
type PromHist struct {
	Unit  string  `json:"unit"`
	Count float64 `json:"count"`
	Mean  float64 `json:"mean"`
	P50   float64 `json:"p50"`
	P90   float64 `json:"p90"`
	P99   float64 `json:"p99"`
}

// nodeHists are the node's own histograms worth putting beside the
// harness's measurements.
var nodeHists = []string{"parley_store_commit_seconds", "parley_store_batch_size", "parley_delivery_seconds"}

// ParseHistograms reads the named histograms (summed over labels).
func ParseHistograms(r io.Reader, names []string) (map[string]PromHist, error) {
	want := map[string]bool{}
	for _, n := range names {
		want[n+"_bucket"], want[n+"_sum"], want[n+"_count"] = true, true, true
	}
	type acc struct {
		le         map[float64]float64
		sum, count float64
	}
	accs := map[string]*acc{}
	get := func(n string) *acc {
		if accs[n] == nil {
			accs[n] = &acc{le: map[float64]float64{}}
		}
		return accs[n]
	}
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 64<<10), 1<<20)
	for sc.Scan() {
		line := sc.Text()
		if line == "" || line[0] == '#' {
			continue
		}
		name := line
		if i := strings.IndexAny(line, "{ "); i >= 0 {
			name = line[:i]
		}
		if !want[name] {
			continue
		}
		f := strings.Fields(line[strings.LastIndexAny(line, "} ")+1:])
		if len(f) == 0 {
			continue
		}
		v, err := strconv.ParseFloat(f[0], 64)
		if err != nil {
			continue
		}
		switch {
		case strings.HasSuffix(name, "_bucket"):
			i := strings.Index(line, `le="`)
			if i < 0 {
				continue
			}
			rest := line[i+4:]
			le, err := strconv.ParseFloat(rest[:strings.IndexByte(rest, '"')], 64)
			if err != nil {
				continue
			}
			get(strings.TrimSuffix(name, "_bucket")).le[le] += v
		case strings.HasSuffix(name, "_sum"):
			get(strings.TrimSuffix(name, "_sum")).sum += v
		case strings.HasSuffix(name, "_count"):
			get(strings.TrimSuffix(name, "_count")).count += v
		}
	}
	out := map[string]PromHist{}
	for name, a := range accs {
		scale, unit := 1.0, ""
		if strings.HasSuffix(name, "_seconds") {
			scale, unit = 1000, "ms"
		}
		les := make([]float64, 0, len(a.le))
		for le := range a.le {
			les = append(les, le)
		}
		sort.Float64s(les)
		q := func(p float64) float64 {
			if a.count == 0 {
				return 0
			}
			target := p * a.count
			prevLE, prevN := 0.0, 0.0
			for _, le := range les {
				n := a.le[le]
				if n >= target {
					if math.IsInf(le, 1) {
						return prevLE * scale
					}
					if n == prevN {
						return le * scale
					}
					return (prevLE + (le-prevLE)*(target-prevN)/(n-prevN)) * scale
				}
				prevLE, prevN = le, n
			}
			return prevLE * scale
		}
		h := PromHist{Unit: unit, Count: a.count, P50: round3(q(0.5)), P90: round3(q(0.9)), P99: round3(q(0.99))}
		if a.count > 0 {
			h.Mean = round3(a.sum / a.count * scale)
		}
		out[name] = h
	}
	return out, sc.Err()
}

// histograms scrapes every node's histograms once (at the end of a run).
func (s *scraper) histograms(ctx context.Context) []map[string]PromHist {
	out := make([]map[string]PromHist, len(s.nodes))
	for i, n := range s.nodes {
		req, err := http.NewRequestWithContext(ctx, http.MethodGet, strings.TrimRight(n, "/")+"/metrics", nil)
		if err != nil {
			continue
		}
		resp, err := s.client.Do(req)
		if err != nil {
			continue
		}
		out[i], _ = ParseHistograms(resp.Body, nodeHists)
		resp.Body.Close()
	}
	return out
}
