package credential

import (
	"errors"
	"strings"
	"testing"
	"time"

	"google.golang.org/protobuf/types/known/timestamppb"

	vonv1 "github.com/vonproject/von/proto/von/v1"
)

func TestSigningKeyRoundTrip(t *testing.T) {
	now := time.Now().Truncate(time.Millisecond)
	k, err := GenerateSigningKey(now)
	if err != nil {
		t.Fatal(err)
	}
	b, err := k.Marshal()
	if err != nil {
		t.Fatal(err)
	}
	got, err := ParseSigningKey(b)
	if err != nil {
		t.Fatal(err)
	}
	if got.ID() != k.ID() || !got.Private.Equal(k.Private) || !got.Created.Equal(now) || !got.Active || !got.Retired.IsZero() {
		t.Fatalf("round trip: %+v, want %+v", got, k)
	}
	if strings.Contains(string(b), "retire_time") {
		t.Errorf("active key stored with a retire time: %s", b)
	}

	claims := &vonv1.MemberCredentialClaims{OnId: 3, Reservation: "r", Member: "h1", PublicKey: make([]byte, 32),
		SealPublicKey: make([]byte, 32), IssueTime: timestamppb.New(now), ExpireTime: timestamppb.New(now.Add(time.Minute))}
	c, err := got.Sign(claims)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := Verify(c, []*vonv1.VerificationKey{k.VerificationKey()}, 3, now); err != nil {
		t.Fatalf("verify: %v", err)
	}

	got.Active, got.Retired = false, now.Add(time.Second)
	if _, err := got.Sign(claims); !errors.Is(err, ErrRetired) {
		t.Errorf("retired key signed: %v", err)
	}
	b, _ = got.Marshal()
	again, err := ParseSigningKey(b)
	if err != nil || again.Active || !again.Retired.Equal(got.Retired) {
		t.Fatalf("retired round trip: %+v, %v", again, err)
	}

	// A record whose public key does not match its seed is refused.
	other, _ := GenerateSigningKey(now)
	ob, _ := other.Marshal()
	bad := strings.Replace(string(b), k.ID(), other.ID(), 1)
	if _, err := ParseSigningKey([]byte(bad)); !errors.Is(err, ErrMalformed) {
		t.Errorf("mismatched key id: %v", err)
	}
	if _, err := ParseSigningKey(ob[:len(ob)/2]); !errors.Is(err, ErrMalformed) {
		t.Errorf("truncated: %v", err)
	}
}

func TestSortKeys(t *testing.T) {
	now := time.Now()
	var keys []*vonv1.VerificationKey
	for i, active := range []bool{false, false, true, false} {
		k, _ := GenerateSigningKey(now.Add(time.Duration(i) * time.Minute))
		k.Active = active
		keys = append(keys, k.VerificationKey())
	}
	oldest, middle, act, newest := keys[0], keys[1], keys[2], keys[3]
	SortKeys(keys)
	for i, want := range []*vonv1.VerificationKey{act, newest, middle, oldest} {
		if keys[i] != want {
			t.Fatalf("key %d is %s, want %s", i, keys[i].GetKeyId(), want.GetKeyId())
		}
	}
}
