package store

import (
	"fmt"
	"io"
	"os"
	"time"

	bolt "go.etcd.io/bbolt"
)

// Backup writes a consistent copy of the store's file to w while the store
// keeps serving: the file as of one read transaction (bbolt's Tx.WriteTo),
// which writers do not wait for. It returns the bytes written. What is
// sealed stays sealed in the copy: the conversations' keys are in it only
// sealed under the KEK, which is not (Config.KEK).
func (s *Store) Backup(w io.Writer) (int64, error) {
	return s.BackupSized(func(int64) (io.Writer, error) { return w, nil })
}

// BackupSized is Backup for a writer that must know the copy's size before
// its first byte (a tar entry's header): start is called once, inside the
// read transaction, with the size the copy will have.
func (s *Store) BackupSized(start func(size int64) (io.Writer, error)) (int64, error) {
	var n int64
	err := s.db.View(func(tx *bolt.Tx) error {
		w, err := start(tx.Size())
		if err != nil {
			return err
		}
		n, err = tx.WriteTo(w)
		return err
	})
	if err != nil {
		return n, fmt.Errorf("store: backup: %w", err)
	}
	return n, nil
}

// restoredEpochBase is where RestoredEpoch counts hours from.
var restoredEpochBase = time.Date(2020, 1, 1, 0, 0, 0, 0, time.UTC)

// RestoredEpoch is the seq epoch a store restored at now starts from at
// least: the hours since 2020 (about 60,000 in 2026; 2^21 epochs, the most
// seqs below 2^53 allow, last 239 years). The node restored may have used
// epochs after the backup was taken (each unclean restart starts one) and
// given their origin names and seqs to clients and peers; a backup knows
// none of them. A node's epochs otherwise count its unclean restarts, far
// fewer than the hours: the restored node's seqs and origin names are then
// new unless it was restored before, within the hours its unclean restarts
// since that restore number.
func RestoredEpoch(now time.Time) uint64 {
	h := now.Sub(restoredEpochBase) / time.Hour
	if h < 0 {
		return 0
	}
	return uint64(h)
}

// MarkRestored prepares the file at path, just copied back from a backup,
// for its first Open: its seq epoch moves to at least epoch (RestoredEpoch)
// and the next Open starts the epoch after it, as after an unclean stop.
// The store must not be open.
func MarkRestored(path string, epoch uint64) error {
	if _, err := os.Stat(path); err != nil {
		return fmt.Errorf("store: restored file: %w", err)
	}
	db, err := bolt.Open(path, 0o600, &bolt.Options{Timeout: 2 * time.Second, NoFreelistSync: true, FreelistType: bolt.FreelistMapType})
	if err != nil {
		return fmt.Errorf("store: open restored file: %w", err)
	}
	err = db.Update(func(tx *bolt.Tx) error {
		meta := tx.Bucket(bMeta)
		if meta == nil {
			return fmt.Errorf("restored file has no meta bucket: %w", ErrInvalid)
		}
		if err := meta.Delete(cleanKey); err != nil {
			return err
		}
		return meta.Put(epochKey, putU64(max(u64(meta.Get(epochKey)), epoch)))
	})
	if cerr := db.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return fmt.Errorf("store: mark restored: %w", err)
	}
	return nil
}
