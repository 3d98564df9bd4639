package admin

import (
	"bufio"
	"context"
	"errors"
	"net"
	"reflect"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/tandem-cluster/tandem/internal/wire"
)

// reply is how a fake member answers one admin request.
type reply struct {
	msg     *wire.ClientMsg // written with the request's id, in version ver (0: 4)
	ver     uint16
	close   bool // close the connection without a word
	silence bool // answer nothing, keep the connection open
}

// fakeMember is a client port that answers admin requests as a test says: replies are taken in
// turn, the last one repeated.
type fakeMember struct {
	t       *testing.T
	addr    string
	replies []reply
	// attachVersion: a CAttach (the probe for an old build) is answered with a redirect written
	// in this version; 0: the connection is closed.
	attachVersion uint16

	mu       sync.Mutex
	requests []wire.AdminRequest
	attaches int
	conns    []net.Conn
}

func newFakeMember(t *testing.T, replies ...reply) *fakeMember {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	f := &fakeMember{t: t, addr: ln.Addr().String(), replies: replies}
	var wg sync.WaitGroup
	t.Cleanup(func() {
		ln.Close()
		f.mu.Lock()
		for _, c := range f.conns {
			c.Close()
		}
		f.mu.Unlock()
		wg.Wait()
	})
	wg.Add(1)
	go func() {
		defer wg.Done()
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			f.mu.Lock()
			f.conns = append(f.conns, c)
			f.mu.Unlock()
			wg.Add(1)
			go func() {
				defer wg.Done()
				defer c.Close()
				f.serve(c)
			}()
		}
	}()
	return f
}

func (f *fakeMember) serve(c net.Conn) {
	r := bufio.NewReader(c)
	var buf []byte
	for {
		_, body, nb, err := wire.ReadFrame(r, 1<<20, buf)
		buf = nb
		if err != nil {
			return
		}
		m, err := wire.DecodeClientMsg(body)
		if err != nil {
			f.t.Errorf("fake member: %v", err)
			return
		}
		switch m.Kind {
		case wire.CAttach:
			f.mu.Lock()
			f.attaches++
			f.mu.Unlock()
			if f.attachVersion == 0 {
				return
			}
			red := wire.ClientMsg{Kind: wire.CRedirect, Session: m.Session, LeaderID: -1}
			if _, err := c.Write(wire.AppendClientFrame(nil, &red, f.attachVersion)); err != nil {
				return
			}
		case wire.CAdmin:
			req, err := wire.DecodeAdminRequest(m.Payload)
			if err != nil {
				f.t.Errorf("fake member: %v", err)
				return
			}
			if m.Version != Version || m.Protocol.Min != Version {
				f.t.Errorf("fake member: an admin request in version %d, range %s", m.Version, m.Protocol)
			}
			f.mu.Lock()
			f.requests = append(f.requests, req)
			rp := f.replies[min(len(f.requests), len(f.replies))-1]
			f.mu.Unlock()
			switch {
			case rp.close:
				return
			case rp.silence:
				continue
			}
			out := *rp.msg
			out.RequestID = m.RequestID
			v := rp.ver
			if v == 0 {
				v = Version
			}
			if _, err := c.Write(wire.AppendClientFrame(nil, &out, v)); err != nil {
				return
			}
		default:
			f.t.Errorf("fake member: unexpected message kind %d", m.Kind)
			return
		}
	}
}

func (f *fakeMember) count() int {
	f.mu.Lock()
	defer f.mu.Unlock()
	return len(f.requests)
}

func (f *fakeMember) request(i int) wire.AdminRequest {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.requests[i]
}

func (f *fakeMember) probes() int {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.attaches
}

func answer(st wire.Status, resp wire.AdminResponse) reply {
	return reply{msg: &wire.ClientMsg{Kind: wire.CAdminResponse, Status: st, Payload: wire.EncodeAdmin(resp)}}
}

func redirect(leader int, addr string) reply {
	return reply{msg: &wire.ClientMsg{Kind: wire.CRedirect, LeaderID: leader, LeaderAddr: addr, Status: wire.StatusNotLeader}}
}

// deadAddr is a loopback address nothing listens on.
func deadAddr(t *testing.T) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	ln.Close()
	return addr
}

func ctxFor(t *testing.T, d time.Duration) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), d)
	t.Cleanup(cancel)
	return ctx
}

var removeTwo = wire.AdminRequest{Op: wire.AdminRemoveMember, ID: 2}

// A follower that knows no leader sends the request on to the next endpoint; one that knows the
// leader's address, to it, even when it is not among the endpoints.
func TestAdminFollowsRedirects(t *testing.T) {
	ok := answer(wire.StatusOK, wire.AdminResponse{Index: 412, Members: []wire.AdminMember{{ID: 0, RaftID: 1}, {ID: 1, RaftID: 2}}})
	leader := newFakeMember(t, ok)
	lost := newFakeMember(t, redirect(-1, ""))
	knows := newFakeMember(t, redirect(7, leader.addr))
	res, err := Do(ctxFor(t, 10*time.Second), []string{lost.addr, knows.addr}, removeTwo, Options{})
	if err != nil || res.Status != wire.StatusOK || res.Response.Index != 412 || len(res.Response.Members) != 2 {
		t.Fatalf("got %+v, %v", res, err)
	}
	if res.Endpoint != leader.addr || !strings.Contains(string(res.Raw), `"index":412`) {
		t.Fatalf("answered by %s, raw %s; want the leader %s", res.Endpoint, res.Raw, leader.addr)
	}
	if lost.count() != 1 || knows.count() != 1 || leader.count() != 1 {
		t.Fatalf("requests: %d, %d, %d; want one each", lost.count(), knows.count(), leader.count())
	}
	if got := leader.request(0); !reflect.DeepEqual(got, removeTwo) {
		t.Fatalf("the leader read %+v", got)
	}
}

// Redirects that never reach a leader are followed a bounded number of times in a row, then
// tried again after a backoff, until the context ends: ErrNoLeader.
func TestAdminNoLeader(t *testing.T) {
	a := newFakeMember(t, redirect(-1, ""))
	b := newFakeMember(t)
	b.replies = []reply{redirect(0, a.addr)}
	_, _, err := Call(ctxFor(t, 500*time.Millisecond), []string{a.addr, b.addr}, removeTwo, Options{})
	if !errors.Is(err, ErrNoLeader) {
		t.Fatalf("got %v, want ErrNoLeader", err)
	}
	if n := a.count() + b.count(); n < maxHops || n > 5*maxHops {
		t.Fatalf("%d requests in 500 ms: the hops are not bounded, or not followed", n)
	}
}

// "Not now" answers are tried again at the leader until it answers otherwise.
func TestAdminRetriesUnavailable(t *testing.T) {
	busy := answer(wire.StatusUnavailable, wire.AdminResponse{Error: "a membership change is in progress: try again once it is applied"})
	leader := newFakeMember(t, busy, busy, answer(wire.StatusOK, wire.AdminResponse{Index: 9}))
	follower := newFakeMember(t, redirect(1, leader.addr))
	resp, st, err := Call(ctxFor(t, 10*time.Second), []string{follower.addr}, removeTwo, Options{})
	if err != nil || st != wire.StatusOK || resp.Index != 9 {
		t.Fatalf("got %+v, %v, %v", resp, st, err)
	}
	if leader.count() != 3 || follower.count() != 1 {
		t.Fatalf("the leader heard %d requests, the follower %d; want 3 and 1", leader.count(), follower.count())
	}
}

// A leader that hands over (to remove itself) answers "not now"; the retry reaches it again, and
// it redirects to the new leader.
func TestAdminRetryFollowsAHandOver(t *testing.T) {
	next := newFakeMember(t, answer(wire.StatusOK, wire.AdminResponse{Index: 5}))
	old := newFakeMember(t, answer(wire.StatusUnavailable, wire.AdminResponse{Error: "the leader (member 0) hands leadership to member 1 before it removes itself: try again"}),
		redirect(1, next.addr))
	resp, st, err := Call(ctxFor(t, 10*time.Second), []string{old.addr}, wire.AdminRequest{Op: wire.AdminRemoveMember, ID: 0}, Options{})
	if err != nil || st != wire.StatusOK || resp.Index != 5 || old.count() != 2 || next.count() != 1 {
		t.Fatalf("got %+v, %v, %v; requests %d, %d", resp, st, err, old.count(), next.count())
	}
}

// When the context ends while the leader still says "not now", the last answer is returned: the
// caller reports it as not done, with its reason.
func TestAdminUnavailableUntilTheEnd(t *testing.T) {
	leader := newFakeMember(t, answer(wire.StatusUnavailable, wire.AdminResponse{Error: "member 3 is not caught up yet (1200 entries behind): try again later"}))
	resp, st, err := Call(ctxFor(t, 600*time.Millisecond), []string{leader.addr}, wire.AdminRequest{Op: wire.AdminPromote, ID: 3}, Options{})
	if err != nil || st != wire.StatusUnavailable || !strings.Contains(resp.Error, "not caught up") {
		t.Fatalf("got %+v, %v, %v", resp, st, err)
	}
	if n := leader.count(); n < 2 || n > 6 {
		t.Fatalf("%d tries in 600 ms with a backoff from 100 ms", n)
	}
}

// Refusals and bad requests are answers: returned at once, never tried again.
func TestAdminReturnsRefusalsAtOnce(t *testing.T) {
	for _, st := range []wire.Status{wire.StatusRejected, wire.StatusBadRequest} {
		leader := newFakeMember(t, answer(st, wire.AdminResponse{Error: "member 2 is not a member (tandem cluster list-members)"}))
		resp, got, err := Call(ctxFor(t, 10*time.Second), []string{leader.addr}, removeTwo, Options{})
		if err != nil || got != st || !strings.Contains(resp.Error, "not a member") || leader.count() != 1 {
			t.Fatalf("status %d: got %+v, %d, %v after %d requests", st, resp, got, err, leader.count())
		}
	}
}

// A change sent and not answered before the context ends, or whose connection ends, has an
// unknown outcome; so has one whose leader lost its leadership meanwhile. A request that
// changes nothing is never "outcome unknown".
func TestAdminOutcomeUnknown(t *testing.T) {
	silent := newFakeMember(t, reply{silence: true})
	start := time.Now()
	_, _, err := Call(ctxFor(t, 300*time.Millisecond), []string{silent.addr}, removeTwo, Options{})
	if !errors.Is(err, ErrOutcomeUnknown) || time.Since(start) > 5*time.Second {
		t.Fatalf("silence: got %v after %s", err, time.Since(start))
	}
	if _, _, err := Call(ctxFor(t, 300*time.Millisecond), []string{silent.addr}, wire.AdminRequest{Op: wire.AdminListMembers}, Options{}); !errors.Is(err, ErrUnreachable) || errors.Is(err, ErrOutcomeUnknown) {
		t.Fatalf("list-members unanswered: got %v, want ErrUnreachable", err)
	}

	changed := newFakeMember(t, answer(wire.StatusUnavailable, wire.AdminResponse{Error: "the leader changed before the change was applied: it may yet be applied or not (outcome unknown); list-members tells"}))
	resp, st, err := Call(ctxFor(t, 10*time.Second), []string{changed.addr}, removeTwo, Options{})
	if !errors.Is(err, ErrOutcomeUnknown) || st != wire.StatusUnavailable || !strings.Contains(resp.Error, "leader changed") || changed.count() != 1 {
		t.Fatalf("leader changed: got %+v, %v, %v after %d requests (want one: not tried again)", resp, st, err, changed.count())
	}

	// A member of this build (it answers the probe in version 4) that drops the connection.
	dropped := newFakeMember(t, reply{close: true})
	dropped.attachVersion = Version
	if _, _, err := Call(ctxFor(t, 10*time.Second), []string{dropped.addr}, removeTwo, Options{}); !errors.Is(err, ErrOutcomeUnknown) || dropped.count() != 1 {
		t.Fatalf("dropped: got %v after %d requests", err, dropped.count())
	}
	if dropped.probes() != 1 {
		t.Fatalf("the member was probed %d times", dropped.probes())
	}
}

// A member that does not speak the admin channel refuses the version, or (an older build) closes
// the connection: ErrNoAdmin, which says so.
func TestAdminVersionRefused(t *testing.T) {
	refusing := newFakeMember(t, reply{msg: &wire.ClientMsg{Kind: wire.CVersionRefused, Protocol: wire.Range{Min: 1, Max: 3},
		Payload: []byte("client protocol: this member speaks [1,3], the client speaks [4,4]: no common version")}, ver: 3})
	for _, op := range []string{wire.AdminStatus, wire.AdminListMembers, wire.AdminRemoveMember} {
		_, _, err := Call(ctxFor(t, 10*time.Second), []string{refusing.addr}, wire.AdminRequest{Op: op, ID: 2}, Options{})
		if !errors.Is(err, ErrNoAdmin) || !strings.Contains(err.Error(), "client protocol [1,3]") || !strings.Contains(err.Error(), "admin channel") {
			t.Fatalf("%s: got %v", op, err)
		}
	}

	old := newFakeMember(t, reply{close: true})
	old.attachVersion = 3
	for _, op := range []string{wire.AdminStatus, wire.AdminRemoveMember} {
		_, _, err := Call(ctxFor(t, 10*time.Second), []string{old.addr}, wire.AdminRequest{Op: op, ID: 2}, Options{})
		if !errors.Is(err, ErrNoAdmin) || errors.Is(err, ErrOutcomeUnknown) || !strings.Contains(err.Error(), "client protocol 3") {
			t.Fatalf("%s at an old build: got %v", op, err)
		}
	}

	// An old member among newer ones is passed over.
	leader := newFakeMember(t, answer(wire.StatusOK, wire.AdminResponse{}))
	if _, st, err := Call(ctxFor(t, 10*time.Second), []string{refusing.addr, leader.addr}, removeTwo, Options{}); err != nil || st != wire.StatusOK {
		t.Fatalf("an old member first: got %v, %v", st, err)
	}
}

// Endpoints that cannot be reached are passed over; when none can be, ErrUnreachable names each
// and why, at once (not at the end of the context).
func TestAdminUnreachable(t *testing.T) {
	a, b := deadAddr(t), deadAddr(t)
	start := time.Now()
	_, _, err := Call(ctxFor(t, 10*time.Second), []string{a, b}, removeTwo, Options{})
	if !errors.Is(err, ErrUnreachable) || !strings.Contains(err.Error(), a) || !strings.Contains(err.Error(), b) ||
		!strings.Contains(err.Error(), "refused") {
		t.Fatalf("got %v", err)
	}
	if took := time.Since(start); took > 5*time.Second {
		t.Fatalf("took %s", took)
	}
	if _, _, err := Call(ctxFor(t, 10*time.Second), []string{a}, wire.AdminRequest{Op: wire.AdminStatus}, Options{}); !errors.Is(err, ErrUnreachable) {
		t.Fatalf("status: got %v", err)
	}
	if _, _, err := Call(ctxFor(t, 10*time.Second), nil, removeTwo, Options{}); !errors.Is(err, ErrUnreachable) {
		t.Fatalf("no endpoints: got %v", err)
	}

	leader := newFakeMember(t, answer(wire.StatusOK, wire.AdminResponse{Index: 3}))
	if resp, st, err := Call(ctxFor(t, 10*time.Second), []string{a, leader.addr}, removeTwo, Options{}); err != nil || st != wire.StatusOK || resp.Index != 3 {
		t.Fatalf("one endpoint down: got %+v, %v, %v", resp, st, err)
	}
	// A redirect to a leader that is down: the other endpoints are tried.
	follower := newFakeMember(t, redirect(2, b))
	if _, st, err := Call(ctxFor(t, 10*time.Second), []string{follower.addr, leader.addr}, removeTwo, Options{}); err != nil || st != wire.StatusOK {
		t.Fatalf("a redirect to a member that is down: got %v, %v", st, err)
	}
}

// status goes to one member, which answers for itself: never redirected, nor sent on to the
// other endpoints.
func TestAdminStatusAsksOneMember(t *testing.T) {
	st := wire.MemberStatus{ID: 1, RaftID: 2, Role: "follower", Term: 3, Leader: 0, Commit: 10, Applied: 10}
	one := newFakeMember(t, answer(wire.StatusOK, wire.AdminResponse{Status: &st}))
	other := newFakeMember(t, answer(wire.StatusOK, wire.AdminResponse{}))
	resp, code, err := Call(ctxFor(t, 10*time.Second), []string{one.addr, other.addr}, wire.AdminRequest{Op: wire.AdminStatus}, Options{})
	if err != nil || code != wire.StatusOK || resp.Status == nil || !reflect.DeepEqual(*resp.Status, st) || other.count() != 0 {
		t.Fatalf("got %+v, %v, %v; the other member heard %d", resp, code, err, other.count())
	}
	redirecting := newFakeMember(t, redirect(0, other.addr))
	if _, _, err := Call(ctxFor(t, 10*time.Second), []string{redirecting.addr, other.addr}, wire.AdminRequest{Op: wire.AdminStatus}, Options{}); err == nil || other.count() != 0 {
		t.Fatalf("a redirected status: got %v; the other member heard %d", err, other.count())
	}
	silent := newFakeMember(t, reply{silence: true})
	if _, _, err := Call(ctxFor(t, 300*time.Millisecond), []string{silent.addr}, wire.AdminRequest{Op: wire.AdminStatus}, Options{}); !errors.Is(err, ErrUnreachable) {
		t.Fatalf("an unanswered status: got %v", err)
	}
}
