package main

import (
	"fmt"
	"net"
	"strings"
)

// Ports without TLS, and --insecure (issue 22).
//
// A member port that anyone can reach and that takes plaintext lets whoever reaches it act as a
// member (claim a member's id, vote, send it a snapshot); so does, for commands, a client port. A
// port bound to a loopback address is reachable from this host only, and serves without TLS as
// it always did (the seed layout, tandem local, the tests). A port bound to any other address —
// every interface (0.0.0.0, ::, or an empty host), an address of a network interface, a host
// name other than localhost — must have TLS configured, or the member refuses to start, naming
// the port, its address and the two ways out: configure TLS, or pass --insecure (which says, in
// the deployment's own files, that the network is trusted: the compose file, the Kubernetes
// manifest). A member started with --insecure logs one warning per port it serves so.
//
// The bind address is the one the member listens on: --member-bind, or the advertised member
// address when none is given (that is what the member binds then), or the address of an
// inherited socket (--member-fd), checked once the socket is known.

// insecureBind reports whether binding addr (host:port, or a host alone) exposes the port beyond
// this host: true for every interface (0.0.0.0, ::, an empty host), for any IP address that is
// not a loopback one (127.0.0.0/8, ::1), and for any host name but localhost, whose resolution
// the member does not control. The client port's check uses it too.
func insecureBind(addr string) bool {
	host, _, err := net.SplitHostPort(addr)
	if err != nil {
		host = addr // a host alone (or something unparsable: not known to be safe)
	}
	host, _, _ = strings.Cut(host, "%") // an IPv6 zone
	host = strings.TrimSuffix(host, ".")
	if strings.EqualFold(host, "localhost") {
		return false
	}
	if ip := net.ParseIP(host); ip != nil {
		return !ip.IsLoopback()
	}
	return true // every interface (""), or a host name that may resolve anywhere
}

// memberPortBind is the address a port will bind (named for the member port; the client port
// uses it alike): member-bind, or the advertised member
// address when none is given ("" with an inherited socket: its address is known at the start).
func memberPortBind(memberBind, advertised string, memberFD int) string {
	switch {
	case memberFD != 0:
		return ""
	case memberBind != "":
		return memberBind
	}
	return advertised
}

// insecureMemberPort is the error of a member port bound to addr without TLS (peerTLS false)
// and without --insecure; nil if the port may serve.
func insecureMemberPort(addr string, peerTLS, insecure bool) error {
	if addr == "" || peerTLS || insecure || !insecureBind(addr) {
		return nil
	}
	return fmt.Errorf("the member port binds %s, not a loopback address, without TLS: whoever reaches it could act as a member; "+
		"configure --peer-cert, --peer-key and --peer-ca, or pass --insecure on a network you trust", addr)
}

// insecureClientPort is the client port's: bound to addr without TLS (clientTLS false: no
// --tls-cert), or with TLS and no authentication (authn false: no --client-ca, no
// --auth-tokens), and without --insecure, anyone who reaches it could send commands and, with
// the admin verbs, stop the cluster (and without TLS a token would cross the network in the
// clear).
func insecureClientPort(addr string, clientTLS, authn, insecure bool) error {
	if addr == "" || (clientTLS && authn) || insecure || !insecureBind(addr) {
		return nil
	}
	if clientTLS {
		return fmt.Errorf("the client port binds %s, not a loopback address, with TLS but without authentication: whoever reaches it "+
			"could send commands and admin requests; configure --client-ca or --auth-tokens, or pass --insecure on a network you trust", addr)
	}
	return fmt.Errorf("the client port binds %s, not a loopback address, without TLS: whoever reaches it could send commands "+
		"and admin requests; configure --tls-cert and --tls-key (and --client-ca or --auth-tokens), or pass --insecure on a network you trust", addr)
}

// insecureWarning is the warning a member started with --insecure logs for each port (its name:
// "member", "client") that binds addr without TLS.
func insecureWarning(port, addr string) string {
	if port == "client" {
		return fmt.Sprintf("the client port binds %s, not a loopback address, without TLS or without authentication (--insecure): "+
			"whoever reaches it may be anyone, and what crosses the network (commands, answers, tokens) is not protected", addr)
	}
	return fmt.Sprintf("the %s port binds %s, not a loopback address, without TLS (--insecure): whoever reaches it is not authenticated",
		port, addr)
}
