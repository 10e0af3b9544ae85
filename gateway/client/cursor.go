package client

// Cursor is where a client stands in one conversation: the highest seq
// received and, while a resume is not complete, the seq the replay started
// after. A replay paged with more, or one cut short by a lost connection,
// leaves a gap below live events already received: the next resume must
// start below it, not at the highest seq. The zero value is a cursor
// before the first event. Not safe for concurrent use.
type Cursor struct {
	max, safe uint64
	resuming  bool
}

// Saw records a delivered event's seq.
func (c *Cursor) Saw(seq uint64) {
	if seq > c.max {
		c.max = seq
	}
}

// Max returns the highest seq seen.
func (c *Cursor) Max() uint64 { return c.max }

// ResumeFrom returns the seq to resume after, and marks a resume begun.
func (c *Cursor) ResumeFrom() uint64 {
	if !c.resuming {
		c.safe = c.max
	}
	c.resuming = true
	return c.safe
}

// Resumed records a resumed frame: with more, the replay goes on after
// head (the seq to resume after next); without, the resume is complete.
func (c *Cursor) Resumed(more bool, head uint64) {
	if !more {
		c.resuming = false
		return
	}
	c.safe = head
}
