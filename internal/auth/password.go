package auth

import (
	"context"
	"crypto/rand"
	"crypto/subtle"
	"encoding/base64"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"unicode/utf8"

	"golang.org/x/crypto/argon2"
)

// Password rules.
const (
	// MinPasswordLength is the fewest characters a password may have.
	MinPasswordLength = 12
	// MaxPasswordBytes bounds a password: longer input is refused before
	// any hashing.
	MaxPasswordBytes = 1024
)

// HashParams are argon2id's cost parameters.
type HashParams struct {
	// Time is the number of passes.
	Time uint32
	// MemoryKiB is the memory used, in KiB.
	MemoryKiB uint32
	// Threads is the parallelism.
	Threads uint8
}

// DefaultHashParams are RFC 9106's second recommended option: t=3, 64 MiB,
// p=4.
var DefaultHashParams = HashParams{Time: 3, MemoryKiB: 64 << 10, Threads: 4}

// Bounds on parameters read from a stored hash, so a tampered row cannot
// make a login allocate gigabytes or spin for minutes.
const (
	maxHashTime    = 16
	maxHashMemory  = 1 << 20 // 1 GiB
	maxHashThreads = 64
	saltLen        = 16
	keyLen         = 32
)

func (p HashParams) validate() error {
	switch {
	case p.Time < 1 || p.Time > maxHashTime:
		return fmt.Errorf("argon2id time %d is outside 1..%d", p.Time, maxHashTime)
	case p.MemoryKiB < 8*uint32(p.Threads) || p.MemoryKiB > maxHashMemory:
		return fmt.Errorf("argon2id memory %d KiB is outside %d..%d", p.MemoryKiB, 8*uint32(p.Threads), maxHashMemory)
	case p.Threads < 1 || p.Threads > maxHashThreads:
		return fmt.Errorf("argon2id parallelism %d is outside 1..%d", p.Threads, maxHashThreads)
	}
	return nil
}

var b64 = base64.RawStdEncoding

// HashPassword makes an argon2id hash in PHC string format:
// $argon2id$v=19$m=65536,t=3,p=4$<salt>$<hash>, base64 without padding.
func HashPassword(password string, p HashParams) (string, error) {
	if err := p.validate(); err != nil {
		return "", err
	}
	salt := make([]byte, saltLen)
	if _, err := rand.Read(salt); err != nil {
		return "", fmt.Errorf("password salt: %w", err)
	}
	key := argon2.IDKey([]byte(password), salt, p.Time, p.MemoryKiB, p.Threads, keyLen)
	return fmt.Sprintf("$argon2id$v=%d$m=%d,t=%d,p=%d$%s$%s", argon2.Version, p.MemoryKiB, p.Time, p.Threads,
		b64.EncodeToString(salt), b64.EncodeToString(key)), nil
}

// phc is a parsed argon2id hash.
type phc struct {
	params HashParams
	salt   []byte
	key    []byte
}

// errBadHash says a stored hash does not parse; its text is never shown.
var errBadHash = errors.New("stored password hash is not an argon2id PHC string")

// parsePHC reads $argon2id$v=19$m=M,t=T,p=P$salt$key strictly.
func parsePHC(s string) (*phc, error) {
	if len(s) > 512 {
		return nil, errBadHash
	}
	parts := strings.Split(s, "$")
	if len(parts) != 6 || parts[0] != "" || parts[1] != "argon2id" || parts[2] != "v="+strconv.Itoa(argon2.Version) {
		return nil, errBadHash
	}
	var h phc
	fields := strings.Split(parts[3], ",")
	if len(fields) != 3 {
		return nil, errBadHash
	}
	for i, want := range []string{"m", "t", "p"} {
		name, val, ok := strings.Cut(fields[i], "=")
		if !ok || name != want || val == "" || (len(val) > 1 && val[0] == '0') {
			return nil, errBadHash
		}
		n, err := strconv.ParseUint(val, 10, 32)
		if err != nil {
			return nil, errBadHash
		}
		switch want {
		case "m":
			h.params.MemoryKiB = uint32(n)
		case "t":
			h.params.Time = uint32(n)
		case "p":
			if n > maxHashThreads {
				return nil, errBadHash
			}
			h.params.Threads = uint8(n)
		}
	}
	if h.params.validate() != nil {
		return nil, errBadHash
	}
	var err error
	if h.salt, err = b64.Strict().DecodeString(parts[4]); err != nil || len(h.salt) < 8 || len(h.salt) > 64 {
		return nil, errBadHash
	}
	if h.key, err = b64.Strict().DecodeString(parts[5]); err != nil || len(h.key) < 16 || len(h.key) > 64 {
		return nil, errBadHash
	}
	return &h, nil
}

// VerifyPassword checks password against a PHC hash in constant time.
// A hash that does not parse is an error, never a match.
func VerifyPassword(password, hash string) (bool, error) {
	h, err := parsePHC(hash)
	if err != nil {
		return false, err
	}
	if len(password) > MaxPasswordBytes {
		return false, nil
	}
	got := argon2.IDKey([]byte(password), h.salt, h.params.Time, h.params.MemoryKiB, h.params.Threads, uint32(len(h.key)))
	return subtle.ConstantTimeCompare(got, h.key) == 1, nil
}

// CheckPasswordRules refuses a password too short, too long, not UTF-8,
// or equal to the username.
func CheckPasswordRules(username, password string) error {
	switch {
	case len(password) > MaxPasswordBytes:
		return fmt.Errorf("%w: a password is at most %d bytes", ErrInvalid, MaxPasswordBytes)
	case !utf8.ValidString(password):
		return fmt.Errorf("%w: a password must be UTF-8", ErrInvalid)
	case utf8.RuneCountInString(password) < MinPasswordLength:
		return fmt.Errorf("%w: a password needs at least %d characters", ErrInvalid, MinPasswordLength)
	case strings.EqualFold(password, username):
		return fmt.Errorf("%w: a password must not be the username", ErrInvalid)
	}
	return nil
}

// passwordAlphabet has no look-alikes (0/O, 1/l/I).
const passwordAlphabet = "abcdefghijkmnopqrstuvwxyzABCDEFGHJKLMNPQRSTUVWXYZ23456789"

// RandomPassword makes a one-time password: 24 characters from a 57-letter
// alphabet (140 bits), in groups of 6 for reading aloud.
func RandomPassword() (string, error) {
	const n = 24
	limit := byte(256 / len(passwordAlphabet) * len(passwordAlphabet)) // rejection sampling: no bias
	var b strings.Builder
	buf := make([]byte, 64)
	for count := 0; count < n; {
		if _, err := rand.Read(buf); err != nil {
			return "", fmt.Errorf("random password: %w", err)
		}
		for _, c := range buf {
			if c >= limit || count == n {
				continue
			}
			if count > 0 && count%6 == 0 {
				b.WriteByte('-')
			}
			b.WriteByte(passwordAlphabet[int(c)%len(passwordAlphabet)])
			count++
		}
	}
	return b.String(), nil
}

// hasher bounds concurrent hashing: each argon2id call holds MemoryKiB.
type hasher struct {
	params HashParams
	sem    chan struct{}
	// dummy is a hash of a random password, verified when there is no
	// account, so a missing account takes as long as a wrong password.
	dummy string
}

func newHasher(p HashParams, concurrency int) (*hasher, error) {
	pw, err := RandomPassword()
	if err != nil {
		return nil, err
	}
	dummy, err := HashPassword(pw, p)
	if err != nil {
		return nil, err
	}
	return &hasher{params: p, sem: make(chan struct{}, concurrency), dummy: dummy}, nil
}

func (h *hasher) acquire(ctx context.Context) error {
	select {
	case h.sem <- struct{}{}:
		return nil
	case <-ctx.Done():
		return fmt.Errorf("wait to hash a password: %w", ctx.Err())
	}
}

func (h *hasher) release() { <-h.sem }

// verify checks password against hash ("" checks the dummy and fails).
func (h *hasher) verify(ctx context.Context, password, hash string) (bool, error) {
	if err := h.acquire(ctx); err != nil {
		return false, err
	}
	defer h.release()
	if hash == "" {
		_, _ = VerifyPassword(password, h.dummy)
		return false, nil
	}
	return VerifyPassword(password, hash)
}

func (h *hasher) hash(ctx context.Context, password string) (string, error) {
	if err := h.acquire(ctx); err != nil {
		return "", err
	}
	defer h.release()
	return HashPassword(password, h.params)
}
