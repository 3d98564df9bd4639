// Package k8s holds Tandem's Kubernetes manifests (tandem.yaml). They were not run on a Kubernetes
// cluster here: this test parses them and checks what the design relies on, nothing more.
package k8s

import (
	"bufio"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"testing"

	"gopkg.in/yaml.v3"

	"github.com/tandem-cluster/tandem/node"
)

type obj = map[string]any

// manifests reads tandem.yaml's documents, by kind.
func manifests(t *testing.T) map[string]obj {
	t.Helper()
	f, err := os.Open("tandem.yaml")
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	byKind := map[string]obj{}
	dec := yaml.NewDecoder(f)
	for {
		var doc obj
		err := dec.Decode(&doc)
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			t.Fatalf("tandem.yaml: %v", err)
		}
		kind, _ := doc["kind"].(string)
		if _, dup := byKind[kind]; dup {
			t.Fatalf("tandem.yaml: two documents of kind %s", kind)
		}
		byKind[kind] = doc
	}
	for _, k := range []string{"Service", "StatefulSet", "PodDisruptionBudget"} {
		if byKind[k] == nil {
			t.Fatalf("tandem.yaml has no %s", k)
		}
	}
	return byKind
}

// at follows a path of map keys and list indexes; it fails the test if the path is missing.
func at(t *testing.T, v any, path ...any) any {
	t.Helper()
	for i, p := range path {
		switch k := p.(type) {
		case string:
			m, ok := v.(obj)
			if !ok || m[k] == nil {
				t.Fatalf("missing %v", path[:i+1])
			}
			v = m[k]
		case int:
			l, ok := v.([]any)
			if !ok || k >= len(l) {
				t.Fatalf("missing %v", path[:i+1])
			}
			v = l[k]
		}
	}
	return v
}

func str(t *testing.T, v any, path ...any) string {
	t.Helper()
	s, ok := at(t, v, path...).(string)
	if !ok {
		t.Fatalf("%v is not a string", path)
	}
	return s
}

func num(t *testing.T, v any, path ...any) int {
	t.Helper()
	n, ok := at(t, v, path...).(int)
	if !ok {
		t.Fatalf("%v is not an integer", path)
	}
	return n
}

// container is the StatefulSet's only container, with its environment in order.
func container(t *testing.T, ss obj) (obj, []obj) {
	t.Helper()
	cs := at(t, ss, "spec", "template", "spec", "containers").([]any)
	if len(cs) != 1 {
		t.Fatalf("the StatefulSet has %d containers, want 1", len(cs))
	}
	c := cs[0].(obj)
	var env []obj
	for _, e := range at(t, c, "env").([]any) {
		env = append(env, e.(obj))
	}
	return c, env
}

var ref = regexp.MustCompile(`\$\(([A-Za-z_][A-Za-z0-9_]*)\)`)

// expand does what the kubelet does to $(VAR) in env values and args: it expands variables
// defined earlier in the list (fake values stand in for the downward API's); an undefined one
// is left as written, which the test reports.
func expand(s string, vars map[string]string) string {
	return ref.ReplaceAllStringFunc(s, func(m string) string {
		if v, ok := vars[m[2:len(m)-1]]; ok {
			return v
		}
		return m
	})
}

func TestHeadlessServicePublishesNotReadyAddresses(t *testing.T) {
	ms := manifests(t)
	svc, ss := ms["Service"], ms["StatefulSet"]
	if got := str(t, svc, "spec", "clusterIP"); got != "None" {
		t.Errorf("Service clusterIP %q: the members' DNS names need a headless service (None)", got)
	}
	if v, _ := at(t, svc, "spec", "publishNotReadyAddresses").(bool); !v {
		t.Error("the Service must publish not-ready addresses: a member is ready only once a leader is known, which needs the members to find each other first")
	}
	if got, want := str(t, ss, "spec", "serviceName"), str(t, svc, "metadata", "name"); got != want {
		t.Errorf("StatefulSet serviceName %q, the headless Service is %q: the pods' DNS names come from it", got, want)
	}
	sel := at(t, svc, "spec", "selector").(obj)
	labels := at(t, ss, "spec", "template", "metadata", "labels").(obj)
	for k, v := range sel {
		if labels[k] != v {
			t.Errorf("the Service selects %s=%v, which the pods do not carry", k, v)
		}
	}
}

func TestPodsStartInParallelAndADrainKeepsAQuorum(t *testing.T) {
	ms := manifests(t)
	ss, pdb := ms["StatefulSet"], ms["PodDisruptionBudget"]
	if got := str(t, ss, "spec", "podManagementPolicy"); got != "Parallel" {
		t.Errorf("podManagementPolicy %q: with OrderedReady, tandem-1 waits for tandem-0 to be ready, which needs a leader, which needs tandem-1", got)
	}
	replicas := num(t, ss, "spec", "replicas")
	quorum := replicas/2 + 1
	spec := at(t, pdb, "spec").(obj)
	var leftAvailable int
	switch {
	case spec["maxUnavailable"] != nil:
		leftAvailable = replicas - num(t, pdb, "spec", "maxUnavailable")
	case spec["minAvailable"] != nil:
		leftAvailable = num(t, pdb, "spec", "minAvailable")
	default:
		t.Fatal("the PodDisruptionBudget sets neither maxUnavailable nor minAvailable")
	}
	if leftAvailable < quorum {
		t.Errorf("the PodDisruptionBudget lets %d of %d members run during a drain: a quorum is %d", leftAvailable, replicas, quorum)
	}
	if leftAvailable >= replicas {
		t.Errorf("the PodDisruptionBudget allows no member away: a drain would never finish")
	}
	labels := at(t, ss, "spec", "template", "metadata", "labels").(obj)
	for k, v := range at(t, pdb, "spec", "selector", "matchLabels").(obj) {
		if labels[k] != v {
			t.Errorf("the PodDisruptionBudget selects %s=%v, which the pods do not carry", k, v)
		}
	}
}

// TestMemberIDsAndAddressesComeFromTheOrdinal expands the container's args and environment for
// each pod as the kubelet would and checks that pod tandem-N runs member N of a member list
// that tandem accepts, whose addresses are the pods' DNS names under the headless service and
// the container's ports, bound on every interface.
func TestMemberIDsAndAddressesComeFromTheOrdinal(t *testing.T) {
	ms := manifests(t)
	ss := ms["StatefulSet"]
	name, svc := str(t, ss, "metadata", "name"), str(t, ss, "spec", "serviceName")
	replicas := num(t, ss, "spec", "replicas")
	c, env := container(t, ss)

	ports := map[string]int{}
	for _, p := range at(t, c, "ports").([]any) {
		ports[str(t, p, "name")] = num(t, p, "containerPort")
	}
	for _, n := range []string{"client", "member", "http"} {
		if ports[n] == 0 {
			t.Fatalf("the container has no port named %s", n)
		}
	}

	for ordinal := range replicas {
		vars := map[string]string{}
		for _, e := range env {
			n := str(t, e, "name")
			if vf, ok := e["valueFrom"].(obj); ok {
				switch fp := str(t, vf, "fieldRef", "fieldPath"); fp {
				case "metadata.labels['apps.kubernetes.io/pod-index']":
					vars[n] = strconv.Itoa(ordinal)
				case "metadata.namespace":
					vars[n] = "ns"
				default:
					t.Fatalf("env %s from an unexpected field %s", n, fp)
				}
				continue
			}
			v := expand(str(t, e, "value"), vars)
			if m := ref.FindString(v); m != "" {
				t.Fatalf("env %s refers to %s, not defined before it: the kubelet leaves it as written", n, m)
			}
			vars[n] = v
		}
		var args []string
		for _, a := range at(t, c, "args").([]any) {
			args = append(args, expand(a.(string), vars))
		}
		if len(args) < 2 || args[0] != "node" {
			t.Fatalf("args %q: want node <id> …", args)
		}
		if args[1] != strconv.Itoa(ordinal) {
			t.Fatalf("pod %s-%d runs member %q: the member id must be the pod's ordinal", name, ordinal, args[1])
		}
		if !strings.Contains(strings.Join(args, " "), "--http-addr 0.0.0.0:"+strconv.Itoa(ports["http"])) {
			t.Errorf("args %q: the probes need the HTTP endpoint on every interface at port %d", args, ports["http"])
		}

		members, err := node.ParseMembers(vars["TANDEM_MEMBERS"])
		if err != nil {
			t.Fatalf("TANDEM_MEMBERS: %v", err)
		}
		if len(members) != replicas {
			t.Fatalf("TANDEM_MEMBERS lists %d members, the StatefulSet runs %d", len(members), replicas)
		}
		cfg := node.DefaultConfig()
		cfg.ID, cfg.Members, cfg.DataDir = ordinal, members, vars["TANDEM_DATA"]
		if err := cfg.Validate(); err != nil {
			t.Fatalf("pod %d: node.Config.Validate: %v", ordinal, err)
		}
		for i, m := range members {
			if m.ID != i {
				t.Errorf("TANDEM_MEMBERS entry %d has id %d: ids must be the ordinals 0..%d", i, m.ID, replicas-1)
			}
			host := fmt.Sprintf("%s-%d.%s.ns.svc", name, i, svc)
			for _, a := range []struct {
				addr, port string
			}{{m.ClientAddr, "client"}, {m.MemberAddr, "member"}} {
				if want := net.JoinHostPort(host, strconv.Itoa(ports[a.port])); a.addr != want {
					t.Errorf("member %d's %s address %q, want %q (the pod's DNS name and the container's %s port)", i, a.port, a.addr, want, a.port)
				}
			}
		}
		for _, b := range []struct{ env, port string }{{"TANDEM_CLIENT_BIND", "client"}, {"TANDEM_MEMBER_BIND", "member"}} {
			if want := "0.0.0.0:" + strconv.Itoa(ports[b.port]); vars[b.env] != want {
				t.Errorf("%s %q, want %q", b.env, vars[b.env], want)
			}
		}
		// Ports bound to every interface: tandem node starts only with TLS on the member port
		// or with --insecure (cmd/tandem/insecure.go).
		insecure := vars["TANDEM_INSECURE"] == "true" || slices.Contains(args, "--insecure")
		peerTLS := vars["TANDEM_PEER_CERT"] != "" && vars["TANDEM_PEER_KEY"] != "" && vars["TANDEM_PEER_CA"] != ""
		if !insecure && !peerTLS {
			t.Errorf("pod %d: the member port binds %s without TLS (TANDEM_PEER_CERT, _KEY, _CA) and without TANDEM_INSECURE=true: "+
				"tandem node would refuse to start", ordinal, vars["TANDEM_MEMBER_BIND"])
		}
	}
}

func TestProbesDataAndUserMatchTheImage(t *testing.T) {
	ms := manifests(t)
	ss := ms["StatefulSet"]
	c, env := container(t, ss)
	for probe, path := range map[string]string{"startupProbe": "/livez", "livenessProbe": "/livez", "readinessProbe": "/readyz"} {
		if got := str(t, c, probe, "httpGet", "path"); got != path {
			t.Errorf("%s path %q, want %q", probe, got, path)
		}
		if got := str(t, c, probe, "httpGet", "port"); got != "http" {
			t.Errorf("%s port %q, want the http port", probe, got)
		}
	}

	var data string
	for _, e := range env {
		if e["name"] == "TANDEM_DATA" {
			data = str(t, e, "value")
		}
	}
	claim := str(t, ss, "spec", "volumeClaimTemplates", 0, "metadata", "name")
	mounted := false
	for _, m := range at(t, c, "volumeMounts").([]any) {
		if str(t, m, "mountPath") == data && str(t, m, "name") == claim {
			mounted = true
		}
	}
	if data == "" || !mounted {
		t.Errorf("TANDEM_DATA %q is not where the claim %q is mounted: the data would not persist", data, claim)
	}

	// The image (deploy/Dockerfile) runs as a numeric user and exposes the ports the pods use.
	user, exposed := dockerfile(t)
	uid := num(t, ss, "spec", "template", "spec", "securityContext", "runAsUser")
	if want := strconv.Itoa(uid); user != want && !strings.HasPrefix(user, want+":") {
		t.Errorf("the Dockerfile's USER %q, the pods run as %d", user, uid)
	}
	if fsg := num(t, ss, "spec", "template", "spec", "securityContext", "fsGroup"); fsg != uid {
		t.Errorf("fsGroup %d: the volume must be writable by user %d", fsg, uid)
	}
	for _, p := range at(t, c, "ports").([]any) {
		if n := str(t, p, "name"); n != "http" && !exposed[num(t, p, "containerPort")] {
			t.Errorf("the Dockerfile does not EXPOSE the %s port %d", n, num(t, p, "containerPort"))
		}
	}
	if g := num(t, ss, "spec", "template", "spec", "terminationGracePeriodSeconds"); g < 20 {
		t.Errorf("terminationGracePeriodSeconds %d: a leader hands over before it stops; give it 20 s at least", g)
	}
}

func dockerfile(t *testing.T) (user string, exposed map[int]bool) {
	t.Helper()
	f, err := os.Open("../Dockerfile")
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	exposed = map[int]bool{}
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		fs := strings.Fields(sc.Text())
		if len(fs) < 2 {
			continue
		}
		switch fs[0] {
		case "USER":
			user = fs[1]
		case "EXPOSE":
			for _, p := range fs[1:] {
				n, _ := strconv.Atoi(strings.TrimSuffix(p, "/tcp"))
				exposed[n] = true
			}
		}
	}
	return user, exposed
}
