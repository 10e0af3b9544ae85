// Package schema is the vocabulary of Parley's control plane (package
// cluster), without its Raft machinery: the records of the replicated state,
// the commands that change it with their type numbers (the log's wire
// format, appended to only) and the rules that validate them. parleyctl
// builds on it alone, so the operators' CLI links none of the server.
//
// Package cluster declares every name here as its own (aliases), so its
// callers see no difference. The errors these docs name besides ErrInvalid
// and ErrUnauthorized (ErrExists, ErrConflict, ...), and the methods
// (WaitApplied, AuthenticateSession), are package cluster's.
package schema
