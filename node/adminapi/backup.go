package adminapi

import (
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"time"
)

// download is a reply that is a file, streamed: its headers go with its
// first byte, so an error before that is answered as any other.
type download struct {
	contentType string
	filename    string
	write       func(w io.Writer) error
}

// backup streams a consistent copy of this node's store and control plane
// (a tar: node/backup.go), for the cluster administrator only: it holds
// every workspace this node holds.
func (a *API) backup(r *http.Request, p principal) (any, error) {
	if err := root(p); err != nil {
		return nil, err
	}
	if a.cfg.Backup == nil {
		return nil, errors.New("this node makes no backups")
	}
	name := fmt.Sprintf("parley-%s-%s.tar", a.cfg.NodeID, a.cfg.Now().UTC().Format("20060102T150405Z"))
	return download{contentType: "application/x-tar", filename: name, write: func(w io.Writer) error {
		return a.cfg.Backup(r.Context(), w)
	}}, nil
}

// startedWriter writes a download's headers before its first byte.
type startedWriter struct {
	w       http.ResponseWriter
	d       download
	started bool
}

func (s *startedWriter) Write(p []byte) (int, error) {
	if !s.started {
		s.started = true
		h := s.w.Header()
		h.Set("Content-Type", s.d.contentType)
		h.Set("Content-Disposition", fmt.Sprintf("attachment; filename=%q", s.d.filename))
		h.Set("Cache-Control", "no-store")
		s.w.WriteHeader(http.StatusOK)
	}
	return s.w.Write(p)
}

// serveDownload writes d; an error once bytes went is only logged (the
// stream ends short, which its reader tells: a backup's manifest is last).
func serveDownload(w http.ResponseWriter, d download) {
	sw := &startedWriter{w: w, d: d}
	start := time.Now()
	err := d.write(sw)
	switch {
	case err != nil && !sw.started:
		write(w, nil, err)
	case err != nil:
		slog.Default().Warn("admin API: a download cut short", "file", d.filename, "after", time.Since(start), "err", err)
	}
}
