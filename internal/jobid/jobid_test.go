package jobid

import (
	"testing"
	"time"
)

func TestNewIsValidUniqueAndOrdered(t *testing.T) {
	seen := map[string]bool{}
	prev := ""
	base := time.Now()
	for i := 0; i < 1000; i++ {
		id := At(base.Add(time.Duration(i) * time.Millisecond))
		if !Valid(id) {
			t.Fatalf("id %q is not valid", id)
		}
		if seen[id] {
			t.Fatalf("duplicate id %q", id)
		}
		seen[id] = true
		if id <= prev {
			t.Fatalf("ids not ordered by time: %q after %q", id, prev)
		}
		prev = id
	}
}

func TestValidRejects(t *testing.T) {
	for _, s := range []string{"", "abc", "01JD8X0000000000000000000A", "01jd8x000000000000000000u0", "../../../../../../../../etc"} {
		if Valid(s) {
			t.Errorf("Valid(%q) = true", s)
		}
	}
}

func TestDerive(t *testing.T) {
	base := New()
	seen := map[string]bool{}
	for n := range 10000 {
		id := Derive(base, n)
		if !Valid(id) || id[:10] != base[:10] {
			t.Fatalf("Derive(%s, %d) = %q: not a valid id with the base's timestamp", base, n, id)
		}
		if Derive(base, n) != id {
			t.Fatalf("Derive(%s, %d) not stable", base, n)
		}
		if seen[id] {
			t.Fatalf("Derive(%s, %d) = %s twice", base, n, id)
		}
		seen[id] = true
	}
	if id := Derive("batch_x", 1); !Valid(id) {
		t.Errorf("Derive of a non-id base: %q invalid", id)
	}
}
