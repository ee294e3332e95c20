package httptarget

import (
	"context"
	"fmt"
	"net"
	"net/netip"
	"strings"
	"syscall"
	"time"
)

// blockedPrefixes are the ranges a target may not resolve to unless the
// Config allows them. IPv4-mapped IPv6 addresses are unmapped before the
// check, and IPv6 forms that embed an IPv4 address (NAT64, 6to4) are
// checked on the embedded address as well.
var blockedPrefixes = []struct {
	prefix netip.Prefix
	why    string
}{
	{netip.MustParsePrefix("0.0.0.0/8"), "unspecified"},
	{netip.MustParsePrefix("10.0.0.0/8"), "private"},
	{netip.MustParsePrefix("100.64.0.0/10"), "shared (CGNAT)"},
	{netip.MustParsePrefix("127.0.0.0/8"), "loopback"},
	{netip.MustParsePrefix("169.254.0.0/16"), "link-local (cloud metadata)"},
	{netip.MustParsePrefix("172.16.0.0/12"), "private"},
	{netip.MustParsePrefix("192.0.0.0/24"), "IETF protocol assignments"},
	{netip.MustParsePrefix("192.168.0.0/16"), "private"},
	{netip.MustParsePrefix("198.18.0.0/15"), "benchmarking"},
	{netip.MustParsePrefix("224.0.0.0/4"), "multicast"},
	{netip.MustParsePrefix("240.0.0.0/4"), "reserved or broadcast"},
	{netip.MustParsePrefix("::/96"), "unspecified, loopback or IPv4-compatible"},
	{netip.MustParsePrefix("64:ff9b:1::/48"), "local NAT64"},
	{netip.MustParsePrefix("100::/64"), "discard"},
	{netip.MustParsePrefix("2001::/32"), "Teredo"},
	{netip.MustParsePrefix("fc00::/7"), "private (unique local)"},
	{netip.MustParsePrefix("fe80::/10"), "link-local"},
	{netip.MustParsePrefix("fec0::/10"), "site-local"},
	{netip.MustParsePrefix("ff00::/8"), "multicast"},
}

var (
	nat64     = netip.MustParsePrefix("64:ff9b::/96")
	sixToFour = netip.MustParsePrefix("2002::/16")
)

// guard decides which addresses the handler may connect to. It is
// immutable after New, so safe for concurrent use.
type guard struct {
	allowAll bool
	prefixes []netip.Prefix
	hosts    map[string]bool // lower case, no trailing dot
}

func newGuard(cfg *Config) *guard {
	g := &guard{allowAll: cfg.AllowPrivate, hosts: make(map[string]bool)}
	for _, p := range cfg.AllowPrefixes {
		if p.IsValid() {
			g.prefixes = append(g.prefixes, p.Masked())
		}
	}
	for _, h := range cfg.AllowHosts {
		if h = normHost(h); h != "" {
			g.hosts[h] = true
		}
	}
	return g
}

func normHost(h string) string { return strings.TrimSuffix(strings.ToLower(h), ".") }

// check returns nil if ip may be dialled, else an *AddressError.
func (g *guard) check(ip netip.Addr) error {
	if g.allowAll {
		return nil
	}
	ip = ip.WithZone("") // a zoned address never matches a prefix
	plain := ip.Unmap()
	for _, p := range g.prefixes {
		if p.Contains(ip) || p.Contains(plain) {
			return nil
		}
	}
	if why := blockedReason(plain); why != "" {
		return &AddressError{Addr: ip, Reason: why}
	}
	return nil
}

// blockedReason says why ip (unmapped, without zone) is refused, or "".
func blockedReason(ip netip.Addr) string {
	if !ip.IsValid() {
		return "invalid"
	}
	for _, b := range blockedPrefixes {
		if b.prefix.Contains(ip) {
			return b.why
		}
	}
	if ip.Is6() {
		a := ip.As16()
		var embedded netip.Addr
		switch {
		case nat64.Contains(ip):
			embedded = netip.AddrFrom4([4]byte(a[12:16]))
		case sixToFour.Contains(ip):
			embedded = netip.AddrFrom4([4]byte(a[2:6]))
		}
		if embedded.IsValid() {
			if why := blockedReason(embedded); why != "" {
				return why + " (embedded in IPv6)"
			}
		}
	}
	return ""
}

// control is the net.Dialer Control function: it runs after the name was
// resolved and the socket created, before connect(2), once per address
// tried. Refusing here sends no packet to the refused address, and a
// name that resolves differently at dial time than at any earlier check
// (DNS rebinding) is still checked on the address actually used.
func (g *guard) control(network, address string, _ syscall.RawConn) error {
	ap, err := netip.ParseAddrPort(address)
	if err != nil {
		return &AddressError{Reason: fmt.Sprintf("unparsable address %q", address)}
	}
	return g.check(ap.Addr())
}

// dialer returns the DialContext the transport uses: names in AllowHosts
// dial unchecked, every other dial is checked by control.
func (g *guard) dialer() func(ctx context.Context, network, addr string) (net.Conn, error) {
	checked := &net.Dialer{Timeout: 30 * time.Second, KeepAlive: 30 * time.Second, Control: g.control}
	unchecked := &net.Dialer{Timeout: 30 * time.Second, KeepAlive: 30 * time.Second}
	return func(ctx context.Context, network, addr string) (net.Conn, error) {
		if len(g.hosts) > 0 {
			if host, _, err := net.SplitHostPort(addr); err == nil && g.hosts[normHost(host)] {
				return unchecked.DialContext(ctx, network, addr)
			}
		}
		return checked.DialContext(ctx, network, addr)
	}
}
