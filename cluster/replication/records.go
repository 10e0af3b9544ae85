package replication

import (
	"sync"

	"parley/store"
)

// maxRecords bounds the cache of conversation records.
const maxRecords = 100_000

// records caches the part of a conversation's record that its events carry
// (workspace, ID, owner, owner's name, creation: fixed for its life):
// publishing runs under the lock of the conversation in the store's
// sequencer, on every message, and must not read the file each time.
type records struct {
	st Store

	mu    sync.Mutex
	byKey map[string]store.Conversation
}

// get is a conversation's record, from the cache or the store.
func (rc *records) get(ws, conv string) (store.Conversation, error) {
	k := ws + "\x00" + conv
	rc.mu.Lock()
	c, ok := rc.byKey[k]
	rc.mu.Unlock()
	if ok {
		return c, nil
	}
	c, err := rc.st.Conversation(ws, conv)
	if err != nil {
		return store.Conversation{}, err
	}
	c.Head, c.Updated, c.Last, c.Inbox = 0, 0, nil, nil
	rc.mu.Lock()
	if len(rc.byKey) >= maxRecords {
		clear(rc.byKey)
	}
	rc.byKey[k] = c
	rc.mu.Unlock()
	return c, nil
}

// forget drops an erased conversation's record.
func (rc *records) forget(ws, conv string) {
	rc.mu.Lock()
	delete(rc.byKey, ws+"\x00"+conv)
	rc.mu.Unlock()
}
