package auth

import (
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/golang-jwt/jwt/v5"
)

// FuzzAuthenticate feeds arbitrary Authorization values: Authenticate must
// never panic, and may only succeed for a credential that is exactly one of
// the valid ones (altered tokens must not verify).
func FuzzAuthenticate(f *testing.F) {
	k := getKeys(f)
	fx := newFixture(f)
	valid := map[string]bool{fx.apiKey: true, fx.readKey: true}
	for _, tok := range []string{
		sign(f, jwt.SigningMethodHS256, "", []byte(testSecret), claims()),
		sign(f, jwt.SigningMethodRS256, "rsa-1", k.rsaA, claims()),
		sign(f, jwt.SigningMethodES256, "ec-1", k.ecA, claims()),
	} {
		valid[tok] = true
	}
	for cred := range valid {
		f.Add("Bearer " + cred)
		f.Add("Bearer " + cred + "=")
		f.Add("Bearer " + strings.ToUpper(cred))
	}
	for _, s := range []string{"", "Bearer", "Bearer ", "Bearer a.b.c", "Bearer ...", "Bearer ..",
		"Basic YTpi", "Bearer eyJhbGciOiJub25lIn0.e30.", "Bearer \x00\xff", "bearer  x  y"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, header string) {
		r := httptest.NewRequest("GET", "/v1/models", nil)
		r.Header["Authorization"] = []string{header} // raw: no canonicalisation
		p, err := fx.a.Authenticate(r)
		if err != nil {
			if p != nil {
				t.Fatal("principal returned with an error")
			}
			return
		}
		v := strings.TrimSpace(header)
		scheme, cred, _ := strings.Cut(v, " ")
		cred = strings.TrimSpace(cred)
		if !strings.EqualFold(scheme, "Bearer") || !valid[cred] {
			t.Fatalf("garbage authenticated: %q -> %+v", header, p)
		}
		if !ValidTenant(p.Tenant) {
			t.Fatalf("invalid tenant %q", p.Tenant)
		}
	})
}
