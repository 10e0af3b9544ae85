// Package webhook sends a workspace's events to its webhook endpoints
// (docs/api.md, "Webhooks"): it derives the events from each
// conversation's durable log in the node's store, signs each POST with the
// endpoint's secrets (Parley-Signature, HMAC-SHA256 over "<t>.<raw body>")
// and delivers them at least once, in order per conversation, from the node
// chosen among the conversation's live replicas; the others take over when
// it dies, from the progress it shares with them. Retries back off for the
// node's retry period, then the event is a dead letter in the control
// plane, redeliverable through the admin API. Outbound connections refuse
// private, loopback and link-local addresses unless the operator allows
// them (dial.go).
package webhook

import (
	"crypto/hmac"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"time"

	"parley/cluster/schema"
)

// Headers of a delivery.
const (
	HeaderSignature = "Parley-Signature"
	HeaderEventID   = "Parley-Event-Id"
	HeaderEventType = "Parley-Event-Type"
)

// Tolerance is how far from the receiver's clock a signature's timestamp
// may be: older or newer deliveries are refused as replays.
const Tolerance = 5 * time.Minute

// Signature is the Parley-Signature header of body sent at t: the
// timestamp, then one v1 per secret (the current one first, the one a
// rotation replaced during its overlap).
func Signature(t time.Time, body []byte, secrets [][]byte) string {
	ts := strconv.FormatInt(t.Unix(), 10)
	var b strings.Builder
	b.WriteString("t=")
	b.WriteString(ts)
	for _, s := range secrets {
		b.WriteString(",v1=")
		b.WriteString(hex.EncodeToString(mac(s, ts, body)))
	}
	return b.String()
}

func mac(secret []byte, ts string, body []byte) []byte {
	m := hmac.New(sha256.New, secret)
	m.Write([]byte(ts))
	m.Write([]byte{'.'})
	m.Write(body)
	return m.Sum(nil)
}

// Errors of Verify.
var (
	ErrNoSignature = errors.New("webhook: no valid signature")
	ErrTimestamp   = errors.New("webhook: timestamp outside the tolerance")
)

// Verify checks a delivery as a receiver does (the recipe in docs/api.md):
// the header's timestamp within Tolerance of now, and one of its v1
// signatures the HMAC of "<t>.<body>" under secret, compared in constant
// time. Dedupe by Parley-Event-Id after it.
func Verify(header string, body []byte, secret []byte, now time.Time) error {
	var ts string
	var sigs []string
	for _, part := range strings.Split(header, ",") {
		k, v, _ := strings.Cut(strings.TrimSpace(part), "=")
		switch k {
		case "t":
			ts = v
		case "v1":
			sigs = append(sigs, v)
		}
	}
	sec, err := strconv.ParseInt(ts, 10, 64)
	if err != nil {
		return fmt.Errorf("%w: timestamp %q", ErrNoSignature, ts)
	}
	if d := now.Sub(time.Unix(sec, 0)); d > Tolerance || d < -Tolerance {
		return fmt.Errorf("%w: %v from now", ErrTimestamp, d)
	}
	want := mac(secret, ts, body)
	for _, s := range sigs {
		got, err := hex.DecodeString(s)
		if err == nil && hmac.Equal(got, want) {
			return nil
		}
	}
	return ErrNoSignature
}

// EventID is an event's ID: the same on every node and every retry, so a
// receiver drops a second copy by it (schema.EventID).
func EventID(workspace, conversation, origin string, oseq uint64) string {
	return schema.EventID(workspace, conversation, origin, oseq)
}
