package httptarget

import (
	"errors"
	"net/netip"
	"testing"
)

// These tests call the dial-time check directly: no packet is sent to any
// of these addresses, even if the check were wrong.
func TestGuardRefusesInternalAddresses(t *testing.T) {
	g := newGuard(&Config{})
	for _, s := range []string{
		"10.0.0.1", "10.255.255.255", "172.16.0.1", "172.31.255.254", "192.168.1.1",
		"169.254.169.254", "169.254.0.1", "127.0.0.1", "127.9.9.9", "0.0.0.0", "0.1.2.3",
		"100.64.0.1", "100.100.100.200", "192.0.0.192", "198.18.0.1", "224.0.0.1", "239.255.255.250",
		"240.0.0.1", "255.255.255.255",
		"::1", "::", "::127.0.0.1", "::ffff:127.0.0.1", "::ffff:10.0.0.1", "::ffff:169.254.169.254",
		"fe80::1", "fe80::1%eth0", "fc00::1", "fd00:ec2::254", "fec0::1", "ff02::1", "100::1",
		"64:ff9b::a00:1",                    // NAT64 of 10.0.0.1
		"64:ff9b::7f00:1",                   // NAT64 of 127.0.0.1
		"64:ff9b:1::1", "2002:a9fe:a9fe::1", // 6to4 of 169.254.169.254
		"2001::1", // Teredo
	} {
		ip := netip.MustParseAddr(s)
		err := g.check(ip)
		var ae *AddressError
		if !errors.Is(err, ErrForbiddenAddress) || !errors.As(err, &ae) || ae.Reason == "" {
			t.Errorf("%s: %v, want refused with a reason", s, err)
		}
	}
	for _, s := range []string{
		"8.8.8.8", "1.1.1.1", "93.184.215.14", "172.32.0.1", "100.128.0.1", "::ffff:8.8.8.8",
		"2606:4700:4700::1111", "2a00:1450:4001:82b::200e", "64:ff9b::808:808", "2002:808:808::1",
	} {
		if err := g.check(netip.MustParseAddr(s)); err != nil {
			t.Errorf("%s: %v, want allowed", s, err)
		}
	}
}

func TestGuardControlChecksTheDialledAddress(t *testing.T) {
	g := newGuard(&Config{})
	for _, addr := range []string{"10.0.0.1:443", "169.254.169.254:80", "[::1]:80", "[::ffff:127.0.0.1]:80", "[fe80::1%eth0]:80", "not-an-address"} {
		if err := g.control("tcp", addr, nil); !errors.Is(err, ErrForbiddenAddress) {
			t.Errorf("%s: %v, want ErrForbiddenAddress", addr, err)
		}
	}
	if err := g.control("tcp6", "[2606:4700:4700::1111]:443", nil); err != nil {
		t.Errorf("public address: %v", err)
	}
}

func TestGuardAllowLists(t *testing.T) {
	g := newGuard(&Config{AllowPrefixes: []netip.Prefix{
		netip.MustParsePrefix("10.1.0.0/16"), netip.MustParsePrefix("fd00:1::/32"), {}, // the zero prefix is ignored
	}})
	for _, s := range []string{"10.1.2.3", "::ffff:10.1.2.3", "fd00:1::5"} {
		if err := g.check(netip.MustParseAddr(s)); err != nil {
			t.Errorf("%s: %v, want allowed by prefix", s, err)
		}
	}
	for _, s := range []string{"10.2.0.1", "169.254.169.254", "127.0.0.1"} {
		if err := g.check(netip.MustParseAddr(s)); err == nil {
			t.Errorf("%s allowed, want refused", s)
		}
	}
	if err := newGuard(&Config{AllowPrivate: true}).check(netip.MustParseAddr("169.254.169.254")); err != nil {
		t.Errorf("AllowPrivate: %v", err)
	}
}
