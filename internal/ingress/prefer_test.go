package ingress

import (
	"testing"
	"time"
)

// TestPreferWait: wait=N is read from any Prefer field, among other
// preferences and with parameters, capped at the maximum; anything else,
// including a wait that is not whole seconds, is ignored.
func TestPreferWait(t *testing.T) {
	const max = 60 * time.Second
	for _, c := range []struct {
		fields []string
		want   time.Duration
		ok     bool
	}{
		{[]string{"wait=5"}, 5 * time.Second, true},
		{[]string{"respond-async, wait=10"}, 10 * time.Second, true},
		{[]string{"return=minimal", "WAIT = 3 ; foo=bar"}, 3 * time.Second, true},
		{[]string{`wait="7"`}, 7 * time.Second, true},
		{[]string{"wait=0"}, 0, true},
		{[]string{"wait=3600"}, max, true},
		{[]string{"wait=abc, wait=2"}, 2 * time.Second, true}, // the first valid one counts
		{[]string{`handling="a, wait=9", wait=4`}, 4 * time.Second, true},
		{nil, 0, false},
		{[]string{""}, 0, false},
		{[]string{"respond-async"}, 0, false},
		{[]string{"wait"}, 0, false},
		{[]string{"wait="}, 0, false},
		{[]string{"wait=-1"}, 0, false},
		{[]string{"wait=+1"}, 0, false},
		{[]string{"wait=1.5"}, 0, false},
		{[]string{"wait=5s"}, 0, false},
		{[]string{"wait=99999999999999999999"}, 0, false},
		{[]string{"waiting=5"}, 0, false},
		{[]string{`wait="5`}, 0, false},
	} {
		got, ok := preferWait(c.fields, max)
		if got != c.want || ok != c.ok {
			t.Errorf("Prefer %q: %v %v, want %v %v", c.fields, got, ok, c.want, c.ok)
		}
	}
}
