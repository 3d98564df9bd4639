package main

import (
	"bytes"
	"encoding/base64"
	"fmt"
	"io"
	"net/http"
	"strings"
)

// tandem bench --etcd: the same load against an etcd cluster, for the side-by-side of
// docs/bench-vs-etcd.sh (which also drives etcd through its gRPC client, tools/etcdload).

// etcdOps drives an etcd cluster through its JSON gateway (/v3/kv/put, /v3/kv/range), so the
// comparison needs no etcd client library. Goroutine k of client ci talks to one member, over a
// connection of its own (HTTP/1.1 has no pipelining: in-flight requests need connections).
// Puts are blind; ranges are linearizable (etcd's default). The gateway's JSON costs etcd
// something its gRPC clients do not pay; docs/PERFORMANCE.md says so next to the figures.
func etcdOps(eps []string, clients, inflight int, workload string, payload int) func(ci, k int) func() error {
	value := strings.Repeat("v", max(1, payload))
	put := fmt.Sprintf(`{"key":%q,"value":%q}`, base64.StdEncoding.EncodeToString([]byte("bench")),
		base64.StdEncoding.EncodeToString([]byte(value)))
	get := fmt.Sprintf(`{"key":%q}`, base64.StdEncoding.EncodeToString([]byte("bench")))
	return func(ci, k int) func() error {
		hc := &http.Client{Transport: &http.Transport{MaxConnsPerHost: 1, MaxIdleConnsPerHost: 1}}
		ep := eps[(ci*inflight+k)%len(eps)]
		if !strings.Contains(ep, "://") {
			ep = "http://" + ep
		}
		url, body := ep+"/v3/kv/put", put
		if sendsQuery(workload, ci, k) {
			url, body = ep+"/v3/kv/range", get
		}
		return func() error {
			resp, err := hc.Post(url, "application/json", bytes.NewReader([]byte(body)))
			if err != nil {
				return err
			}
			_, _ = io.Copy(io.Discard, resp.Body)
			resp.Body.Close()
			if resp.StatusCode != http.StatusOK {
				return fmt.Errorf("etcd answered %s", resp.Status)
			}
			return nil
		}
	}
}
