package natsauth

import (
	"fmt"
	"strings"
)

// PasswordVar is the environment variable that holds role's NATS password
// in the deploy configs: nats.conf reads it as $VAR, the service's
// container passes it on as INFERQ_NATS_PASSWORD. (INFERQ_* names are
// inferq's own configuration, so these are not.)
func PasswordVar(role string) string { return "NATS_" + strings.ToUpper(role) + "_PASSWORD" }

// IssuerVar is the environment variable that holds the auth callout's
// issuer, the public account nkey (A...) whose seed the ingress signs with.
const IssuerVar = "NATS_CALLOUT_ISSUER"

// ConfAuthorization is nats.conf's authorization block for prefix: one
// user per service role with the permissions of ServicePermissions, each
// password read from PasswordVar(role), and the auth callout (issuer from
// IssuerVar) for every other client, so no client is anonymous. The deploy
// configs carry this text, indented by indent; their tests compare it, so
// the table and the deployments cannot drift apart.
func ConfAuthorization(prefix, indent string) (string, error) {
	var b strings.Builder
	line := func(depth int, format string, args ...any) {
		b.WriteString(indent + strings.Repeat("  ", depth) + fmt.Sprintf(format, args...) + "\n")
	}
	list := func(depth int, key string, subjects []string) {
		line(depth, "%s: [", key)
		for _, s := range subjects {
			line(depth+1, "%q", s)
		}
		line(depth, "]")
	}
	line(0, "authorization {")
	line(1, "users: [")
	for _, role := range Roles {
		p, err := ServicePermissions(role, prefix)
		if err != nil {
			return "", err
		}
		line(2, "{")
		line(3, "user: %s", role)
		line(3, "password: $%s", PasswordVar(role))
		line(3, "permissions: {")
		line(4, "publish: {")
		list(5, "allow", p.PubAllow)
		list(5, "deny", p.PubDeny)
		line(4, "}")
		line(4, "subscribe: {")
		list(5, "allow", p.SubAllow)
		line(4, "}")
		if p.Responses {
			line(4, "allow_responses: {max: 1, expires: \"1m\"}")
		}
		line(3, "}")
		line(2, "}")
	}
	line(1, "]")
	line(1, "# Every client that is not a service user is handed to the ingress,")
	line(1, "# which admits tenants by their API key or JWT (internal/natsauth).")
	line(1, "auth_callout {")
	line(2, "issuer: $%s", IssuerVar)
	line(2, "auth_users: [%s]", strings.Join(Roles, ", "))
	line(1, "}")
	line(0, "}")
	return b.String(), nil
}
