package client

import "github.com/tandem-cluster/tandem/internal/wire"

// WithProtocol returns cfg with the client's protocol versions narrowed to r, for tests of mixed
// versions.
func WithProtocol(cfg Config, r wire.Range) Config {
	cfg.protocol = r
	return cfg
}
