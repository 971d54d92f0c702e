package webhook

import (
	"context"
	"fmt"

	"github.com/inferq/inferq/internal/config"
)

// Settings are the webhooks section of the config, parsed: what the
// ingress needs to accept callback URLs and the deliverer to sign.
type Settings struct {
	Policy   *Policy
	secret   Secret
	tenants  map[string]Secret
	defaults map[string]string
}

// FromConfig parses the webhooks section: the secrets (inline or from
// its file), the allow-list, and each tenant's default URL, which must pass
// the policy's syntax check.
func FromConfig(c config.Webhooks) (*Settings, error) {
	pol, err := NewPolicy(c.AllowPrivate, c.Allow)
	if err != nil {
		return nil, err
	}
	s := &Settings{Policy: pol, tenants: map[string]Secret{}, defaults: map[string]string{}}
	if s.secret, err = LoadSecret(c.Secret, c.SecretFile); err != nil {
		return nil, fmt.Errorf("webhooks.secret: %w", err)
	}
	for name, t := range c.Tenants {
		if t.Secret != "" {
			if s.tenants[name], err = ParseSecret(t.Secret); err != nil {
				return nil, fmt.Errorf("webhooks.tenants.%s.secret: %w", name, err)
			}
		}
		if t.CallbackURL != "" {
			if _, err := CheckSyntax(t.CallbackURL); err != nil {
				return nil, fmt.Errorf("webhooks.tenants.%s.callback_url: %w", name, err)
			}
			s.defaults[name] = t.CallbackURL
		}
	}
	return s, nil
}

// Disabled are settings that refuse every callback URL: no secret.
func Disabled() *Settings {
	return &Settings{Policy: &Policy{hosts: map[string]bool{}}, tenants: map[string]Secret{}, defaults: map[string]string{}}
}

// Secrets are the secrets a tenant's webhooks are signed with: its own if
// it has one, else the shared one; none when neither is configured.
func (s *Settings) Secrets(tenant string) []Secret {
	if k, ok := s.tenants[tenant]; ok {
		return []Secret{k}
	}
	if s.secret != nil {
		return []Secret{s.secret}
	}
	return nil
}

// CallbackURL is the URL a tenant's job reports to: the one the request
// gave, checked against the policy, else the tenant's default (checked
// again: its host may resolve elsewhere now); "" for none. Its error wraps
// ErrRefused with what to tell the tenant.
func (s *Settings) CallbackURL(ctx context.Context, tenant, given string) (string, error) {
	url := given
	if url == "" {
		url = s.defaults[tenant]
	}
	if url == "" {
		return "", nil
	}
	if len(s.Secrets(tenant)) == 0 {
		return "", fmt.Errorf("%w: webhooks are not configured on this broker (no signing secret)", ErrRefused)
	}
	if err := s.Policy.CheckURL(ctx, url); err != nil {
		return "", err
	}
	return url, nil
}
