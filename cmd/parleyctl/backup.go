package main

import (
	"archive/tar"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"time"
)

func init() {
	register(command{"backup", "-out FILE", "write a consistent copy of the node's store and control-plane snapshot to FILE (a tar; never overwrites)", backup})
}

// backupManifest is what parleyctl reads of a backup's last entry
// (node/backup.go).
type backupManifest struct {
	Node      string    `json:"node"`
	TakenAt   time.Time `json:"taken_at"`
	StoreSize int64     `json:"store_size"`
	Snapshot  struct {
		Index uint64 `json:"index"`
	} `json:"snapshot"`
}

// countWriter counts what goes through it.
type countWriter struct {
	w io.Writer
	n int64
}

func (c *countWriter) Write(p []byte) (int, error) {
	n, err := c.w.Write(p)
	c.n += int64(n)
	return n, err
}

func backup(e *env, args []string) (err error) {
	f := e.flags("backup")
	out := f.String("out", "", "file to write the backup to; it must not exist")
	if _, err := f.parse(args, 0, 0); err != nil {
		return err
	}
	if *out == "" {
		return usagef("-out FILE is required")
	}
	file, err := os.OpenFile(*out, os.O_CREATE|os.O_EXCL|os.O_WRONLY, 0o600)
	if errors.Is(err, os.ErrExist) {
		return fmt.Errorf("%s exists: not overwriting it (give another -out)", *out)
	}
	if err != nil {
		return err
	}
	defer func() {
		if cerr := file.Close(); err == nil {
			err = cerr
		}
		if err != nil {
			os.Remove(*out)
		}
	}()
	// -timeout bounds the wait for the reply to start, not its length.
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	timer := time.AfterFunc(e.g.timeout, cancel)
	resp, err := e.send(ctx, http.MethodGet, "/v1/admin/cluster/backup", nil, nil, true)
	timer.Stop()
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	// Written as it is read, and read as a tar on the way: the stream is
	// whole only if it ends with its manifest.
	cw := &countWriter{w: file}
	in := io.TeeReader(resp.Body, cw)
	tr := tar.NewReader(in)
	var m *backupManifest
	for {
		h, err := tr.Next()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			return fmt.Errorf("backup cut short after %d bytes: %v", cw.n, err)
		}
		m = nil
		if h.Name == "manifest.json" {
			m = &backupManifest{}
			if err := json.NewDecoder(tr).Decode(m); err != nil {
				return fmt.Errorf("backup manifest: %v", err)
			}
		}
		if _, err := io.Copy(io.Discard, tr); err != nil {
			return fmt.Errorf("backup cut short after %d bytes: %v", cw.n, err)
		}
	}
	if _, err := io.Copy(io.Discard, in); err != nil {
		return fmt.Errorf("backup cut short after %d bytes: %v", cw.n, err)
	}
	if m == nil {
		return fmt.Errorf("backup cut short after %d bytes: no manifest at its end (see the node's log)", cw.n)
	}
	if err := file.Sync(); err != nil {
		return err
	}
	if e.g.json {
		b, _ := json.Marshal(map[string]any{"file": *out, "bytes": cw.n, "node": m.Node, "taken_at": m.TakenAt, "store_bytes": m.StoreSize, "snapshot_index": m.Snapshot.Index})
		fmt.Fprintln(e.stdout, string(b))
		return nil
	}
	fmt.Fprintf(e.stdout, "wrote %s: %d bytes, node %s at %s (store %d bytes, control plane at log index %d)\n",
		*out, cw.n, m.Node, m.TakenAt.Format(time.RFC3339), m.StoreSize, m.Snapshot.Index)
	return nil
}
