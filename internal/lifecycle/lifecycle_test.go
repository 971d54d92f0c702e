package lifecycle_test

import (
	"testing"

	"github.com/inferq/inferq/internal/lifecycle"
	"github.com/inferq/inferq/schemas/inferqpb"
)

func TestStatusOrder(t *testing.T) {
	tests := []struct {
		name     string
		status   lifecycle.Status
		rank     int
		terminal bool
		proto    inferqpb.Status
	}{
		{"queued", lifecycle.Queued, 0, false, inferqpb.Status_STATUS_QUEUED},
		{"running", lifecycle.Running, 1, false, inferqpb.Status_STATUS_RUNNING},
		{"succeeded", lifecycle.Succeeded, 2, true, inferqpb.Status_STATUS_SUCCEEDED},
		{"failed", lifecycle.Failed, 2, true, inferqpb.Status_STATUS_FAILED},
		{"cancelled", lifecycle.Cancelled, 2, true, inferqpb.Status_STATUS_CANCELLED},
		{"expired", lifecycle.Expired, 2, true, inferqpb.Status_STATUS_EXPIRED},
		{"unknown", lifecycle.Status("paused"), -1, false, inferqpb.Status_STATUS_UNSPECIFIED},
		{"empty", lifecycle.Status(""), -1, false, inferqpb.Status_STATUS_UNSPECIFIED},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			s := tc.status
			if s.Rank() != tc.rank || s.Terminal() != tc.terminal || s.Valid() != (tc.rank >= 0) || s.Proto() != tc.proto {
				t.Fatalf("%q: rank %d terminal %v valid %v proto %v", s, s.Rank(), s.Terminal(), s.Valid(), s.Proto())
			}
			back, ok := lifecycle.StatusOf(tc.proto)
			if ok != s.Valid() || (ok && back != s) {
				t.Fatalf("StatusOf(%v) = %q, %v", tc.proto, back, ok)
			}
		})
	}
	if string(lifecycle.Succeeded) != "succeeded" || lifecycle.TerminalRank != lifecycle.Expired.Rank() {
		t.Fatal("status names or terminal rank changed")
	}
}

func TestStatusesAreOrdered(t *testing.T) {
	all := lifecycle.Statuses()
	if len(all) != 6 {
		t.Fatalf("%d statuses, want 6", len(all))
	}
	for i, s := range all {
		if !s.Valid() || (i > 0 && s.Rank() < all[i-1].Rank()) {
			t.Fatalf("statuses not in rank order: %v", all)
		}
	}
	if _, ok := lifecycle.StatusOf(inferqpb.Status(99)); ok {
		t.Fatal("an unknown proto status maps to a status")
	}
}
