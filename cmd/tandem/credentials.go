package main

import (
	"crypto/tls"
	"flag"
	"fmt"
	"os"
	"strings"

	"github.com/tandem-cluster/tandem/internal/tlsconf"
)

// credentialFlags are a client's credentials on the command line (tandem client, tandem
// cluster): TLS to the members' client ports, and a client certificate or a token.
type credentialFlags struct {
	cacert, cert, key, tokenFile *string
}

func addCredentialFlags(fs *flag.FlagSet) *credentialFlags {
	return &credentialFlags{
		cacert: fs.String("cacert", os.Getenv("TANDEM_CACERT"), "connect over TLS, verifying the members' certificates with this CA `file` (PEM) [TANDEM_CACERT]"),
		cert:   fs.String("cert", os.Getenv("TANDEM_CERT"), "connect over TLS and authenticate with this client certificate `file` (PEM; with --key) [TANDEM_CERT]"),
		key:    fs.String("key", os.Getenv("TANDEM_KEY"), "the client certificate's key `file` (PEM) [TANDEM_KEY]"),
		tokenFile: fs.String("token-file", os.Getenv("TANDEM_TOKEN_FILE"),
			"authenticate with the token in this `file` (its first line; over TLS if --cacert is given) [TANDEM_TOKEN_FILE]"),
	}
}

// load reads the files: a TLS configuration if --cacert or --cert is given (nil: plaintext),
// and the token if --token-file is. A token is sent without TLS only to loopback endpoints:
// elsewhere it would cross the network in the clear, before any member could refuse it.
func (f *credentialFlags) load(endpoints []string) (*tls.Config, string, error) {
	var cfg *tls.Config
	if *f.cacert != "" || *f.cert != "" || *f.key != "" {
		if (*f.cert == "") != (*f.key == "") {
			return nil, "", fmt.Errorf("--cert and --key go together: give both or neither")
		}
		var err error
		if cfg, err = tlsconf.Dial(tlsconf.Files{CA: *f.cacert, Cert: *f.cert, Key: *f.key}); err != nil {
			return nil, "", fmt.Errorf("TLS: %w", err)
		}
	}
	token := ""
	if *f.tokenFile != "" {
		b, err := os.ReadFile(*f.tokenFile)
		if err != nil {
			return nil, "", fmt.Errorf("--token-file: %w", err)
		}
		token, _, _ = strings.Cut(string(b), "\n")
		if token = strings.TrimSpace(token); token == "" {
			return nil, "", fmt.Errorf("--token-file %s: its first line is empty", *f.tokenFile)
		}
		if cfg == nil {
			for _, ep := range endpoints {
				if insecureBind(strings.TrimSpace(ep)) {
					return nil, "", fmt.Errorf("--token-file without --cacert would send the token in the clear to %s: "+
						"give --cacert (the CA of the members' client-port certificates)", ep)
				}
			}
		}
	}
	return cfg, token, nil
}
