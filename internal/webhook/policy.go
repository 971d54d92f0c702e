package webhook

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"net/netip"
	"net/url"
	"strings"
	"syscall"
	"time"
)

// ErrRefused marks a callback URL the policy does not allow; its message
// says why, and is safe to show the tenant who gave the URL.
var ErrRefused = errors.New("callback_url refused")

// MaxURLLength bounds a callback URL.
const MaxURLLength = 2048

// Policy decides which callback URLs the broker may call. By default only
// public addresses: loopback, private, link-local, unspecified, multicast
// and other special-purpose ranges are refused, because a tenant could
// otherwise make the broker POST to internal services. AllowPrivate lifts
// that; Allow names exceptions (IPs, CIDRs or host names).
type Policy struct {
	allowPrivate bool
	nets         []netip.Prefix
	hosts        map[string]bool
	resolver     *net.Resolver
}

// NewPolicy reads the allow-list: each entry an IP, a CIDR or a host name.
func NewPolicy(allowPrivate bool, allow []string) (*Policy, error) {
	p := &Policy{allowPrivate: allowPrivate, hosts: map[string]bool{}, resolver: net.DefaultResolver}
	for _, s := range allow {
		s = strings.TrimSpace(s)
		if pr, err := netip.ParsePrefix(s); err == nil {
			p.nets = append(p.nets, pr.Masked())
			continue
		}
		if a, err := netip.ParseAddr(s); err == nil {
			p.nets = append(p.nets, netip.PrefixFrom(a.Unmap(), a.Unmap().BitLen()))
			continue
		}
		if s == "" || strings.ContainsAny(s, "/:* ") {
			return nil, fmt.Errorf("webhooks.allow: %q is not an IP, a CIDR or a host name", s)
		}
		p.hosts[strings.ToLower(strings.TrimSuffix(s, "."))] = true
	}
	return p, nil
}

// special are ranges no webhook should reach besides those net/netip
// names (loopback, private, link-local, unspecified, multicast).
var special = []netip.Prefix{
	netip.MustParsePrefix("0.0.0.0/8"),       // "this network"
	netip.MustParsePrefix("100.64.0.0/10"),   // carrier-grade NAT
	netip.MustParsePrefix("192.0.0.0/24"),    // IETF protocol assignments
	netip.MustParsePrefix("198.18.0.0/15"),   // benchmarking
	netip.MustParsePrefix("240.0.0.0/4"),     // reserved, and broadcast
	netip.MustParsePrefix("64:ff9b:1::/48"),  // local-use NAT64
	netip.MustParsePrefix("2001:db8::/32"),   // documentation
	netip.MustParsePrefix("fec0::/10"),       // deprecated site-local
	netip.MustParsePrefix("::ffff:0:0:0/96"), // IPv4-translated
}

// nat64 embeds an IPv4 address in its last 32 bits: judged by that one.
var nat64 = netip.MustParsePrefix("64:ff9b::/96")

// internal reports whether a is an address a tenant must not reach.
func internal(a netip.Addr) bool {
	a = a.Unmap()
	if nat64.Contains(a) {
		b := a.As16()
		return internal(netip.AddrFrom4([4]byte{b[12], b[13], b[14], b[15]}))
	}
	if !a.IsValid() || a.IsLoopback() || a.IsPrivate() || a.IsLinkLocalUnicast() || a.IsLinkLocalMulticast() ||
		a.IsInterfaceLocalMulticast() || a.IsMulticast() || a.IsUnspecified() {
		return true
	}
	for _, p := range special {
		if p.Contains(a) {
			return true
		}
	}
	return false
}

// allowedAddr reports whether the policy lets the broker connect to a.
func (p *Policy) allowedAddr(a netip.Addr) bool {
	a = a.Unmap()
	if p.allowPrivate || !internal(a) {
		return true
	}
	for _, n := range p.nets {
		if n.Contains(a) {
			return true
		}
	}
	return false
}

// allowedHost reports whether host is allowed by name, whatever it
// resolves to.
func (p *Policy) allowedHost(host string) bool {
	return p.hosts[strings.ToLower(strings.TrimSuffix(host, "."))]
}

func refused(format string, args ...any) error {
	return fmt.Errorf("%w: %s", ErrRefused, fmt.Sprintf(format, args...))
}

// CheckSyntax checks that raw is an absolute http or https URL with a host
// and no credentials, and returns it parsed.
func CheckSyntax(raw string) (*url.URL, error) {
	if len(raw) > MaxURLLength {
		return nil, refused("longer than %d characters", MaxURLLength)
	}
	u, err := url.Parse(raw)
	if err != nil {
		return nil, refused("not a URL")
	}
	switch {
	case u.Scheme != "http" && u.Scheme != "https":
		return nil, refused("the scheme must be http or https")
	case u.Host == "" || u.Hostname() == "":
		return nil, refused("no host")
	case u.User != nil:
		return nil, refused("user information is not allowed in the URL")
	}
	if port := u.Port(); port != "" {
		if _, err := net.LookupPort("tcp", port); err != nil || port == "0" {
			return nil, refused("bad port %q", port)
		}
	}
	return u, nil
}

// CheckURL is the submission-time check of a callback URL: its syntax,
// then the addresses its host resolves to (every one must be allowed). The
// same rule is applied again when a delivery dials (Client), so a name that
// resolves elsewhere later (DNS rebinding) is still refused.
func (p *Policy) CheckURL(ctx context.Context, raw string) error {
	u, err := CheckSyntax(raw)
	if err != nil {
		return err
	}
	host := u.Hostname()
	if p.allowedHost(host) {
		return nil
	}
	if a, err := netip.ParseAddr(host); err == nil {
		if !p.allowedAddr(a) {
			return refused("%s is a loopback, private or otherwise internal address", host)
		}
		return nil
	}
	ctx, cancel := context.WithTimeout(ctx, 3*time.Second)
	defer cancel()
	addrs, err := p.resolver.LookupNetIP(ctx, "ip", host)
	if err != nil || len(addrs) == 0 {
		return refused("host %q does not resolve", host)
	}
	for _, a := range addrs {
		if !p.allowedAddr(a) {
			return refused("host %q resolves to %s, a loopback, private or otherwise internal address", host, a)
		}
	}
	return nil
}

// Client is the HTTP client deliveries use: each request bounded by
// timeout, no proxy (the policy must see the real peer), no redirects
// (a 3xx is a failed delivery, as the spec recommends), and every
// connection's address checked when it is dialled.
func (p *Policy) Client(timeout time.Duration) *http.Client {
	checked := &net.Dialer{Timeout: timeout, Control: func(_, address string, _ syscall.RawConn) error {
		ap, err := netip.ParseAddrPort(address)
		if err != nil {
			return refused("cannot check address %q", address)
		}
		if !p.allowedAddr(ap.Addr()) {
			return refused("%s is a loopback, private or otherwise internal address", ap.Addr())
		}
		return nil
	}}
	open := &net.Dialer{Timeout: timeout}
	tr := &http.Transport{
		Proxy: nil,
		DialContext: func(ctx context.Context, network, addr string) (net.Conn, error) {
			host, _, err := net.SplitHostPort(addr)
			if err == nil && p.allowedHost(host) {
				return open.DialContext(ctx, network, addr)
			}
			return checked.DialContext(ctx, network, addr)
		},
		TLSHandshakeTimeout:   timeout,
		ResponseHeaderTimeout: timeout,
		MaxIdleConnsPerHost:   4,
		IdleConnTimeout:       90 * time.Second,
		ForceAttemptHTTP2:     true,
	}
	return &http.Client{Timeout: timeout, Transport: tr,
		CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
}
