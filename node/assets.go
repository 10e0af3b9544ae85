package node

import (
	"bytes"
	"compress/gzip"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"io/fs"
	"mime"
	"net/http"
	"path"
	"strconv"
	"strings"
)

// Static files (pages, widget.js, the console's scripts and styles) are
// embedded in the binary, so each is read once at start: its bytes, a gzip
// copy when that is smaller, and a strong ETag from its SHA-256. A client
// that has a file already revalidates it with If-None-Match and receives
// 304 and no body; a URL with ?v= and the file's ETag (a content-hashed URL)
// may be cached for a year.
//
// The widget and the console share their client code (the connection with
// its transport fallback, resume cursors, message merging) in one module,
// web/static/client.js, which defines one name, ParleyClient. The console
// loads it as its own script, /static/client.js, before agent.js. The widget
// stays one script tag on customers' pages with no build step: /widget.js is
// a bundle joined here at start, client.js then widget.js, inside one block
// ({ ... }), so that ParleyClient, a top-level const, is the widget's alone
// and never a name on a customer's page (nor redeclared when a page loads the
// widget twice). The bundle is then served like any file: gzip, ETag and the
// ?v= hash are those of the bytes served, so a new client.js is a new
// widget.js. It is plain script from the node's origin, no inline code, so
// the Content-Security-Policy (script-src 'self') is unchanged.

// bundles are the files served as others joined (see above), by their path
// in the asset tree, each with its parts in order.
var bundles = map[string][]string{
	"widget.js": {"static/client.js", "widget.js"},
}

// bundleHead opens every bundle; a comment for whoever reads the file.
const bundleHead = "/* Parley: %s, joined in one block by the node (node/assets.go) */\n{\n"

// readStatic is a file's bytes as served: the file, or a bundle's parts
// joined.
func readStatic(fsys fs.FS, name string) ([]byte, error) {
	parts, ok := bundles[name]
	if !ok {
		return fs.ReadFile(fsys, name)
	}
	var b bytes.Buffer
	fmt.Fprintf(&b, bundleHead, strings.Join(parts, " + "))
	for _, p := range parts {
		raw, err := fs.ReadFile(fsys, p)
		if err != nil {
			return nil, err
		}
		b.Write(raw)
		if !bytes.HasSuffix(raw, []byte("\n")) {
			b.WriteByte('\n')
		}
	}
	b.WriteString("}\n")
	return b.Bytes(), nil
}

// staticFile is one embedded file ready to serve.
type staticFile struct {
	ctype string
	raw   []byte
	gz    []byte // nil when gzip does not make it smaller
	etag  string // "sha256-prefix", quoted
	hash  string // the same, unquoted: the ?v= of a content-hashed URL
}

func loadStatic(fsys fs.FS, name string) (*staticFile, error) {
	raw, err := readStatic(fsys, name)
	if err != nil {
		return nil, fmt.Errorf("static %s: %w", name, err)
	}
	sum := sha256.Sum256(raw)
	f := &staticFile{raw: raw, hash: hex.EncodeToString(sum[:12])}
	f.etag = `"` + f.hash + `"`
	f.ctype = mime.TypeByExtension(path.Ext(name))
	if f.ctype == "" {
		f.ctype = http.DetectContentType(raw)
	}
	var b bytes.Buffer
	zw, _ := gzip.NewWriterLevel(&b, gzip.BestCompression)
	zw.Write(raw)
	zw.Close()
	if b.Len() < len(raw) {
		f.gz = b.Bytes()
	}
	return f, nil
}

// serve writes the file, gzipped when the client accepts it, or 304 when
// the client's copy is current. cacheControl applies to URLs without the
// file's ?v=.
func (f *staticFile) serve(w http.ResponseWriter, r *http.Request, cacheControl string) {
	h := w.Header()
	h.Set("ETag", f.etag)
	h.Set("Vary", "Accept-Encoding")
	if v := r.URL.Query().Get("v"); v != "" && v == f.hash {
		h.Set("Cache-Control", "public, max-age=31536000, immutable")
	} else {
		h.Set("Cache-Control", cacheControl)
	}
	if etagMatch(r.Header.Get("If-None-Match"), f.etag) {
		w.WriteHeader(http.StatusNotModified)
		return
	}
	body := f.raw
	if f.gz != nil && acceptsGzip(r.Header.Get("Accept-Encoding")) {
		body = f.gz
		h.Set("Content-Encoding", "gzip")
	}
	h.Set("Content-Type", f.ctype)
	h.Set("Content-Length", strconv.Itoa(len(body)))
	if r.Method == http.MethodHead {
		return
	}
	w.Write(body)
}

// etagMatch reports whether an If-None-Match header names etag (or *).
func etagMatch(header, etag string) bool {
	for _, t := range strings.Split(header, ",") {
		t = strings.TrimSpace(t)
		if t == "*" || strings.TrimPrefix(t, "W/") == etag {
			return true
		}
	}
	return false
}

// acceptsGzip reports whether an Accept-Encoding header allows gzip.
func acceptsGzip(header string) bool {
	for _, part := range strings.Split(header, ",") {
		name, params, _ := strings.Cut(strings.TrimSpace(part), ";")
		if !strings.EqualFold(strings.TrimSpace(name), "gzip") {
			continue
		}
		q := strings.TrimSpace(params)
		if v, ok := strings.CutPrefix(q, "q="); ok {
			if f, err := strconv.ParseFloat(v, 64); err == nil && f == 0 {
				return false
			}
		}
		return true
	}
	return false
}

// staticDir is every file of a directory tree, by its path in it.
type staticDir map[string]*staticFile

func loadStaticDir(fsys fs.FS) (staticDir, error) {
	d := staticDir{}
	err := fs.WalkDir(fsys, ".", func(p string, e fs.DirEntry, err error) error {
		if err != nil || e.IsDir() {
			return err
		}
		f, err := loadStatic(fsys, p)
		if err != nil {
			return err
		}
		d[p] = f
		return nil
	})
	return d, err
}
