package certs

import (
	"bytes"
	"encoding/json"
	"io"
	"net/http"
	"strings"
	"sync"
)

// orderLocations works around x/crypto/acme's CreateOrderCert, which
// polls a processing order at the finalize response's Location header:
// RFC 8555 does not require that header, and some CAs (pebble since
// v2.8, Buypass) send none, so the client polled "" and failed after the
// CA had issued the certificate (golang/go#77704). It remembers each
// order's URL by its finalize URL, from the responses that carry both,
// and adds the Location a finalize response lacks.
type orderLocations struct {
	next http.RoundTripper

	mu    sync.Mutex
	byFin map[string]string // finalize URL → order URL
}

// maxOrderBody bounds what is read of a response to look for an order.
const maxOrderBody = 1 << 20

func (o *orderLocations) RoundTrip(req *http.Request) (*http.Response, error) {
	res, err := o.next.RoundTrip(req)
	if err != nil || req.Method != http.MethodPost || res.StatusCode/100 != 2 ||
		!strings.HasPrefix(res.Header.Get("Content-Type"), "application/json") {
		return res, err
	}
	body, err := io.ReadAll(io.LimitReader(res.Body, maxOrderBody))
	res.Body.Close()
	if err != nil {
		return nil, err
	}
	res.Body = io.NopCloser(bytes.NewReader(body))
	var order struct {
		Finalize string `json:"finalize"`
	}
	if json.Unmarshal(body, &order) != nil || order.Finalize == "" {
		return res, nil
	}
	o.mu.Lock()
	defer o.mu.Unlock()
	if loc := res.Header.Get("Location"); loc != "" {
		if o.byFin == nil || len(o.byFin) > 1000 {
			o.byFin = map[string]string{}
		}
		o.byFin[order.Finalize] = loc
	} else if req.URL.String() == order.Finalize && o.byFin[order.Finalize] != "" {
		res.Header.Set("Location", o.byFin[order.Finalize])
	}
	return res, nil
}
