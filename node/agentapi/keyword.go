package agentapi

import (
	"strings"
	"unicode"

	"parley/store"
)

// Keyword search: what the agents' search does without the embedding model
// (mode=keyword, and the default on a node where the model is off).
const (
	// maxKeywordScan bounds the conversations one keyword search reads,
	// most recently changed first: each is unsealed and read, so the cost
	// is the workspace's size, not the answer's.
	maxKeywordScan = 2000
)

// keywordTerms are q's words, lower-cased: letters and digits, anything
// else a separator.
func keywordTerms(q string) []string {
	return strings.FieldsFunc(strings.ToLower(q), func(r rune) bool {
		return !unicode.IsLetter(r) && !unicode.IsNumber(r)
	})
}

// keywordSearch finds, most recently changed first, up to k conversations
// of ws whose text (ConversationText: the visitor's messages first, up to
// its first 4,000 characters) holds every term, whatever the case. It
// reads at most maxKeywordScan conversations; complete says whether it
// read them all.
func (a *API) keywordSearch(ws string, terms []string, k int) (hits []convHit, complete bool, err error) {
	// One page: a page reads the whole list anyway (ConversationsPage).
	page, next, err := a.cfg.Store.ConversationsPageFunc(ws, "", store.Cursor{}, maxKeywordScan, nil)
	if err != nil {
		return nil, false, err
	}
	hits = []convHit{}
	for _, c := range page {
		text, err := a.cfg.Embeddings.ConversationText(ws, c.ID)
		if err != nil || !containsAll(strings.ToLower(text), terms) {
			continue // erased meanwhile, or not a match
		}
		hit := convHit{Conversation: c.ID, Score: 1, Owner: c.Owner, OwnerName: c.OwnerName, Updated: c.Updated}
		if c.Last != nil && !c.Last.IsDeleted() {
			hit.Preview = truncateRunes(c.Last.Body, previewRunes)
		}
		hits = append(hits, hit)
		if len(hits) == k {
			return hits, false, nil
		}
	}
	return hits, next.ID == "", nil
}

func containsAll(text string, terms []string) bool {
	for _, t := range terms {
		if !strings.Contains(text, t) {
			return false
		}
	}
	return true
}
