package schema

import (
	"crypto/pbkdf2"
	"crypto/rand"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/base64"
	"fmt"
	"strconv"
	"strings"
)

// Password hashes are self-describing strings,
//
//	pbkdf2-sha256$<iterations>$<salt>$<hash>
//
// with salt and hash in unpadded standard base64, so the iteration count can
// be raised later without invalidating stored hashes.
const (
	passwordScheme = "pbkdf2-sha256"
	// MinPasswordIterations is the fewest PBKDF2 iterations accepted, in a
	// new hash or a stored one.
	MinPasswordIterations = 100_000
	// DefaultPasswordIterations is OWASP's 2023 figure for PBKDF2-SHA256.
	DefaultPasswordIterations = 600_000
	// maxPasswordIterations bounds the work a stored hash can ask for.
	maxPasswordIterations = 10_000_000
	passwordSaltLen       = 16
	passwordKeyLen        = 32
	// Passwords are bounded so that hashing cannot be used to burn CPU.
	minPasswordLen = 8
	maxPasswordLen = 1024
)

var b64 = base64.RawStdEncoding

// HashPassword hashes a password with PBKDF2-HMAC-SHA256, a random salt and
// the given iterations (0: DefaultPasswordIterations). It runs on the node
// that takes the request, before a command is proposed: the log and the
// snapshots only ever carry hashes.
func HashPassword(password string, iterations int) (string, error) {
	if iterations == 0 {
		iterations = DefaultPasswordIterations
	}
	if iterations < MinPasswordIterations || iterations > maxPasswordIterations {
		return "", invalidf("%d password iterations: want %d to %d", iterations, MinPasswordIterations, maxPasswordIterations)
	}
	if err := checkPassword(password); err != nil {
		return "", err
	}
	salt := make([]byte, passwordSaltLen)
	rand.Read(salt) // never fails: crypto/rand crashes the program instead
	key, err := pbkdf2.Key(sha256.New, password, salt, iterations, passwordKeyLen)
	if err != nil {
		return "", fmt.Errorf("pbkdf2: %w", err)
	}
	return fmt.Sprintf("%s$%d$%s$%s", passwordScheme, iterations, b64.EncodeToString(salt), b64.EncodeToString(key)), nil
}

func checkPassword(p string) error {
	if len(p) < minPasswordLen || len(p) > maxPasswordLen {
		return invalidf("password of %d bytes: want %d to %d", len(p), minPasswordLen, maxPasswordLen)
	}
	return nil
}

type passwordHash struct {
	iterations int
	salt, key  []byte
}

func parsePasswordHash(s string) (passwordHash, error) {
	parts := strings.Split(s, "$")
	if len(parts) != 4 || parts[0] != passwordScheme {
		return passwordHash{}, invalidf("password hash: want %s$<iterations>$<salt>$<hash>", passwordScheme)
	}
	n, err := strconv.Atoi(parts[1])
	if err != nil || n < MinPasswordIterations || n > maxPasswordIterations || parts[1] != strconv.Itoa(n) {
		return passwordHash{}, invalidf("password hash: iterations %q: want %d to %d", parts[1], MinPasswordIterations, maxPasswordIterations)
	}
	salt, err := b64.DecodeString(parts[2])
	if err != nil || len(salt) < passwordSaltLen {
		return passwordHash{}, invalidf("password hash: bad salt")
	}
	key, err := b64.DecodeString(parts[3])
	if err != nil || len(key) != passwordKeyLen {
		return passwordHash{}, invalidf("password hash: bad hash")
	}
	return passwordHash{iterations: n, salt: salt, key: key}, nil
}

// checkPasswordHash is the validation of a command's hash: anything but a
// well-formed hash (a plaintext password above all) is refused.
func checkPasswordHash(s string) error {
	_, err := parsePasswordHash(s)
	return err
}

// VerifyPassword checks a password against a hash from HashPassword: nil if
// it matches, ErrUnauthorized if not, ErrInvalid if the hash is malformed.
// The comparison takes constant time.
func VerifyPassword(hash, password string) error {
	_, err := VerifyPasswordAtCost(hash, password, 0)
	return err
}

// VerifyPasswordAtCost is VerifyPassword spending at least cost PBKDF2
// iterations whatever the hash: when the stored hash is cheaper, the
// difference is spent on a throw-away derivation, so that a wrong password
// for an account hashed at an older, lower cost answers in the time of one
// at the current cost (and of an unknown account). work is the iterations
// spent; a malformed hash spends cost too.
func VerifyPasswordAtCost(hash, password string, cost int) (work int, err error) {
	h, err := parsePasswordHash(hash)
	if err != nil {
		return pad(0, cost), err
	}
	if len(password) > maxPasswordLen {
		return pad(0, max(cost, h.iterations)), fmt.Errorf("password: %w", ErrUnauthorized)
	}
	key, err := pbkdf2.Key(sha256.New, password, h.salt, h.iterations, len(h.key))
	if err != nil {
		return h.iterations, fmt.Errorf("pbkdf2: %w", err)
	}
	work = pad(h.iterations, cost)
	if subtle.ConstantTimeCompare(key, h.key) != 1 {
		return work, fmt.Errorf("password: %w", ErrUnauthorized)
	}
	return work, nil
}

// pad spends cost-done further PBKDF2 iterations when done is short of
// cost, and returns the iterations spent in all.
func pad(done, cost int) int {
	if done >= cost {
		return done
	}
	pbkdf2.Key(sha256.New, "parley-padding", padSalt[:], cost-done, passwordKeyLen)
	return cost
}

var padSalt [passwordSaltLen]byte

// PasswordCost is the PBKDF2 iteration count of a stored hash.
func PasswordCost(hash string) (int, error) {
	h, err := parsePasswordHash(hash)
	return h.iterations, err
}
