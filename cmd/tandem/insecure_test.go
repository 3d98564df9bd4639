package main

import (
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/tandem-cluster/tandem/internal/testpki"
)

func TestInsecureBind(t *testing.T) {
	for addr, want := range map[string]bool{
		"127.0.0.1:9100": false, "127.1.2.3:9100": false, "[::1]:9100": false, "localhost:9100": false, "LOCALHOST.:1": false,
		"localhost": false, "127.0.0.1": false,
		"0.0.0.0:9100": true, ":9100": true, "[::]:9100": true, "10.0.0.1:9100": true, "[fe80::1%eth0]:9100": true,
		"tandem0:9100": true, "member-0.example.org:9100": true, "": true, "not an address": true,
	} {
		if got := insecureBind(addr); got != want {
			t.Errorf("insecureBind(%q) = %v, want %v", addr, got, want)
		}
	}
}

// A member port bound to a non-loopback address — given as member-bind, or the advertised
// member address when none is — needs TLS or --insecure, in whichever source it is given; the
// refusal is one line naming the address and both ways out. A loopback address needs neither.
func TestNodeRefusesAnInsecureMemberPort(t *testing.T) {
	const want = "tandem node: the member port binds %s, not a loopback address, without TLS: whoever reaches it could act as a member; " +
		"configure --peer-cert, --peer-key and --peer-ca, or pass --insecure on a network you trust\n"
	for _, tc := range []struct {
		env  map[string]string
		args []string
		addr string
	}{
		{nil, []string{"0", "--member-bind", "0.0.0.0:9100"}, "0.0.0.0:9100"},
		{map[string]string{"TANDEM_MEMBER_BIND": ":9100"}, []string{"0"}, ":9100"},
		{nil, []string{"0", "--members", "0,10.0.0.1:9000,10.0.0.1:9100|1,10.0.0.2:9000,10.0.0.2:9100"}, "10.0.0.1:9100"},
		{nil, []string{"1", "--member-addr", "tandem1:9101"}, "tandem1:9101"},
	} {
		_, _, stderr, code, done := prepare(t, tc.env, tc.args...)
		lines := strings.Split(strings.TrimSuffix(stderr, "\n"), "\n")
		if !done || code != exitUsage || len(lines) != 2 || lines[0]+"\n" != strings.Replace(want, "%s", tc.addr, 1) {
			t.Errorf("env %v args %q: exit %d, stderr %q; want the refusal naming %s", tc.env, tc.args, code, stderr, tc.addr)
		}
		// With --insecure (or its variable, or the file's key) it starts.
		for _, extra := range []struct {
			env  map[string]string
			args []string
		}{
			{nil, []string{"--insecure"}},
			{map[string]string{"TANDEM_INSECURE": "true"}, nil},
			{map[string]string{"TANDEM_CONFIG": writeFile(t, "c.yaml", "insecure: true\n")}, nil},
		} {
			env := map[string]string{}
			for k, v := range tc.env {
				env[k] = v
			}
			for k, v := range extra.env {
				env[k] = v
			}
			args := append(slices.Clone(tc.args), extra.args...)
			args = append(args, "--data", filepath.Join(t.TempDir(), "d"))
			if setup, _, stderr, code, done := prepare(t, env, args...); done || code != exitOK || !setup.insecure {
				t.Errorf("env %v args %q: exit %d, stderr %q; want a start", env, args, code, stderr)
			}
		}
	}
	// Loopback needs neither; an inherited socket is checked at the start (runNode), not here.
	for _, args := range [][]string{{"0"}, {"0", "--member-bind", "127.0.0.1:9100"}, {"0", "--member-bind", "[::1]:0"},
		{"0", "--member-fd", "3"}} {
		if _, _, stderr, code, done := prepare(t, nil, args...); done || code != exitOK {
			t.Errorf("args %q: exit %d, stderr %q; want a start", args, code, stderr)
		}
	}
}

// The member port's TLS flags set the node's fields, from any source (the allowed names as a
// comma-separated value, or a list in a config file); with them a non-loopback member port
// needs no --insecure; their mistakes are said in the flags' words.
func TestNodePeerTLSFlags(t *testing.T) {
	dir := t.TempDir()
	ca := testpki.NewCA(t, "peers")
	caFile := ca.WriteCA(t, dir, "ca.crt")
	c := ca.Issue(t, testpki.Member, "member-0", nil, "10.0.0.1").Write(t, dir, "member-0")
	members := "0,127.0.0.1:9000,10.0.0.1:9100|1,127.0.0.2:9000,10.0.0.2:9100" // (client ports on loopback: no client TLS needed)
	file := writeFile(t, "c.yaml", "peer-allowed-names:\n  - member-0\n  - member-1\n")
	setup, out, stderr, code, done := prepare(t, map[string]string{"TANDEM_PEER_KEY": c.KeyFile, "TANDEM_CONFIG": file},
		"0", "--members", members, "--peer-cert", c.CertFile, "--peer-ca", caFile, "--print-config")
	if code != exitOK || !done {
		t.Fatalf("exit %d, stderr %q", code, stderr)
	}
	for _, want := range []string{"peer-cert: " + c.CertFile, "peer-key: " + c.KeyFile, "# from TANDEM_PEER_KEY", "peer-ca: " + caFile,
		"peer-allowed-names: member-0,member-1", "insecure: false"} {
		if !strings.Contains(out, want) {
			t.Errorf("--print-config lacks %q:\n%s", want, out)
		}
	}
	setup, _, stderr, code, done = prepare(t, map[string]string{"TANDEM_PEER_KEY": c.KeyFile, "TANDEM_CONFIG": file},
		"0", "--members", members, "--peer-cert", c.CertFile, "--peer-ca", caFile, "--member-bind", "0.0.0.0:9100")
	if done || code != exitOK {
		t.Fatalf("exit %d, stderr %q", code, stderr)
	}
	if cfg := setup.cfg; cfg.PeerCertFile != c.CertFile || cfg.PeerKeyFile != c.KeyFile || cfg.PeerCAFile != caFile ||
		!slices.Equal(cfg.PeerAllowedNames, []string{"member-0", "member-1"}) {
		t.Fatalf("config %+v", cfg)
	}
	for _, tc := range []struct {
		env  map[string]string
		args []string
		want string
	}{
		{nil, []string{"--peer-cert", c.CertFile, "--peer-ca", caFile},
			`invalid configuration: peer-key is empty: peer-cert ("` + c.CertFile + `") needs its key (peer-key default, peer-cert from --peer-cert)`},
		{map[string]string{"TANDEM_PEER_CERT": c.CertFile, "TANDEM_PEER_KEY": c.KeyFile}, nil,
			"peer-ca is empty: TLS on the member port needs the CA that signs the members' certificates"},
		{nil, []string{"--peer-cert", c.CertFile, "--peer-key", c.KeyFile, "--peer-ca", filepath.Join(dir, "nope.crt")},
			`peer-ca ("` + filepath.Join(dir, "nope.crt") + `"): no such file or directory (peer-ca from --peer-ca)`},
		{nil, []string{"--peer-cert", c.CertFile, "--peer-key", c.KeyFile, "--peer-ca", caFile, "--peer-allowed-names", "x, y"},
			"carries none of peer-allowed-names ([x y]), so the peers would refuse it"},
		{nil, []string{"--peer-allowed-names", "member-0"}, "peer-allowed-names ([member-0]) given without TLS on the member port: set peer-cert, peer-key and peer-ca too"},
	} {
		args := append([]string{"0", "--members", members}, tc.args...)
		_, _, stderr, code, _ := prepare(t, tc.env, args...)
		if code != exitUsage || !strings.Contains(stderr, tc.want) {
			t.Errorf("env %v args %q: exit %d, stderr %q; want %q", tc.env, tc.args, code, stderr, tc.want)
		}
	}
}

// The client port alike: bound beyond loopback without --tls-cert it needs --insecure; with TLS
// (and the member port's) it does not.
func TestNodeRefusesAnInsecureClientPort(t *testing.T) {
	_, _, stderr, code, done := prepare(t, nil, "0", "--client-bind", "0.0.0.0:9000")
	if !done || code != exitUsage || !strings.Contains(stderr, "the client port binds 0.0.0.0:9000, not a loopback address, without TLS") ||
		!strings.Contains(stderr, "--tls-cert") {
		t.Fatalf("exit %d, stderr %q; want the client port's refusal", code, stderr)
	}
	data := filepath.Join(t.TempDir(), "d")
	if _, _, stderr, code, done := prepare(t, nil, "0", "--client-bind", "0.0.0.0:9000", "--insecure", "--data", data); done || code != exitOK {
		t.Fatalf("with --insecure: exit %d, stderr %q", code, stderr)
	}
	// TLS alone is not enough: nobody would be authenticated.
	dir := t.TempDir()
	srv := testpki.NewCA(t, "ca").Issue(t, testpki.Server, "member-0", nil).Write(t, dir, "srv")
	tokens := writeFile(t, "tokens", "a-token-0123456789abcdef ops admin\n")
	_, _, stderr, code, done = prepare(t, nil, "0", "--client-bind", "0.0.0.0:9000", "--tls-cert", srv.CertFile, "--tls-key", srv.KeyFile, "--data", data)
	if !done || code != exitUsage || !strings.Contains(stderr, "with TLS but without authentication") {
		t.Fatalf("TLS without authentication: exit %d, stderr %q", code, stderr)
	}
	if _, _, stderr, code, done := prepare(t, nil, "0", "--client-bind", "0.0.0.0:9000", "--tls-cert", srv.CertFile, "--tls-key", srv.KeyFile,
		"--auth-tokens", tokens, "--data", data); done || code != exitOK {
		t.Fatalf("with --tls-cert and --auth-tokens: exit %d, stderr %q", code, stderr)
	}
}

// The client port's files are checked before the start, in the flags' words, as the member
// port's are: a client's certificate cannot serve, a garbage CA, a token file that does not
// parse.
func TestNodeChecksClientPortFiles(t *testing.T) {
	dir := t.TempDir()
	ca := testpki.NewCA(t, "ca")
	caFile := ca.WriteCA(t, dir, "ca.crt")
	srv := ca.Issue(t, testpki.Server, "member-0", nil).Write(t, dir, "srv")
	cl := ca.Issue(t, testpki.Client, "alice", nil).Write(t, dir, "alice")
	far := ca.Issue(t, testpki.Server, "elsewhere", nil, "10.9.9.9").Write(t, dir, "far")
	junk := writeFile(t, "junk.pem", "not PEM")
	for _, tc := range []struct {
		args []string
		want string
	}{
		{[]string{"--tls-cert", cl.CertFile, "--tls-key", cl.KeyFile}, "does not allow serverAuth"},
		{[]string{"--tls-cert", far.CertFile, "--tls-key", far.KeyFile}, "does not name 127.0.0.1, the host clients dial"},
		{[]string{"--tls-cert", srv.CertFile, "--tls-key", cl.KeyFile}, "private key does not match"},
		{[]string{"--tls-cert", srv.CertFile, "--tls-key", srv.KeyFile, "--client-ca", junk}, "client-ca"},
		{[]string{"--tls-cert", srv.CertFile, "--tls-key", srv.KeyFile, "--auth-tokens", writeFile(t, "t", "short ops admin\n")}, "auth-tokens"},
		{[]string{"--tls-cert", srv.CertFile, "--tls-key", srv.KeyFile, "--client-ca", caFile, "--print-config", "--auth-tokens", junk}, "line 1"},
	} {
		_, _, stderr, code, _ := prepare(t, nil, append([]string{"0"}, tc.args...)...)
		if code != exitUsage || !strings.Contains(stderr, tc.want) {
			t.Errorf("%q: exit %d, stderr %q; want %q", tc.args, code, stderr, tc.want)
		}
	}
	if _, _, stderr, code, _ := prepare(t, nil, "0", "--tls-cert", srv.CertFile, "--tls-key", srv.KeyFile, "--client-ca", caFile,
		"--data", filepath.Join(dir, "d")); code != exitOK {
		t.Fatalf("good files: exit %d, stderr %q", code, stderr)
	}
}
