package cluster

import (
	"errors"
	"regexp"
	"strconv"
	"strings"
	"testing"
)

func TestHashPasswordFormat(t *testing.T) {
	t.Parallel()
	h := testPasswordHash()
	m := regexp.MustCompile(`^pbkdf2-sha256\$([0-9]+)\$([A-Za-z0-9+/]{22})\$([A-Za-z0-9+/]{43})$`).FindStringSubmatch(h)
	if m == nil {
		t.Fatalf("hash %q is not pbkdf2-sha256$<iterations>$<salt>$<hash>", h)
	}
	if n, _ := strconv.Atoi(m[1]); n < 100_000 {
		t.Fatalf("%d iterations, want at least 100000", n)
	}
	other, err := HashPassword(testPassword, MinPasswordIterations)
	if err != nil {
		t.Fatal(err)
	}
	if other == h {
		t.Fatal("two hashes of one password are equal: the salt is not random")
	}
	if DefaultPasswordIterations < 100_000 {
		t.Fatal("default iterations below 100000")
	}
}

func TestHashPasswordRefuses(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name       string
		password   string
		iterations int
	}{
		{"too few iterations", testPassword, 99_999},
		{"too many iterations", testPassword, 1 << 30},
		{"short password", "short", MinPasswordIterations},
		{"huge password", strings.Repeat("x", 2000), MinPasswordIterations},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			if _, err := HashPassword(tt.password, tt.iterations); !errors.Is(err, ErrInvalid) {
				t.Fatalf("err %v, want ErrInvalid", err)
			}
		})
	}
}

func TestVerifyPassword(t *testing.T) {
	t.Parallel()
	h := testPasswordHash()
	parts := strings.Split(h, "$")
	flip := func(s string) string { // change one base64 digit
		b := []byte(s)
		if b[3] == 'A' {
			b[3] = 'B'
		} else {
			b[3] = 'A'
		}
		return string(b)
	}
	tests := []struct {
		name     string
		hash     string
		password string
		want     error
	}{
		{"right password", h, testPassword, nil},
		{"wrong password", h, testPassword + "!", ErrUnauthorized},
		{"empty password", h, "", ErrUnauthorized},
		{"tampered hash", strings.Join([]string{parts[0], parts[1], parts[2], flip(parts[3])}, "$"), testPassword, ErrUnauthorized},
		{"tampered salt", strings.Join([]string{parts[0], parts[1], flip(parts[2]), parts[3]}, "$"), testPassword, ErrUnauthorized},
		{"tampered iterations", strings.Join([]string{parts[0], "100001", parts[2], parts[3]}, "$"), testPassword, ErrUnauthorized},
		{"iterations lowered below the floor", strings.Join([]string{parts[0], "1000", parts[2], parts[3]}, "$"), testPassword, ErrInvalid},
		{"other scheme", strings.Join([]string{"pbkdf2-sha1", parts[1], parts[2], parts[3]}, "$"), testPassword, ErrInvalid},
		{"truncated", h[:len(h)-5], testPassword, ErrInvalid},
		{"plaintext", testPassword, testPassword, ErrInvalid},
		{"empty", "", testPassword, ErrInvalid},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			err := VerifyPassword(tt.hash, tt.password)
			if tt.want == nil && err != nil || tt.want != nil && !errors.Is(err, tt.want) {
				t.Fatalf("err %v, want %v", err, tt.want)
			}
		})
	}
}
