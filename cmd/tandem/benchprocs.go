package main

import (
	"bufio"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"syscall"
)

// The members of tandem bench --processes (and --failover): three `tandem node` processes of
// this executable, each in its own process group, followed through the role banners they print,
// sampled for CPU and resident memory through /proc.

// benchProcs is three member processes with their data under dir (stop removes it).
type benchProcs struct {
	dir     string
	cmds    []*exec.Cmd // behind mu; nil while member i is not running (killed)
	clients []string    // client endpoints
	members string      // the --members value every member is started with
	exe     string
	extra   []string // more flags for every member (--tls)
	mu      sync.Mutex
	// roles and terms: behind mu, what member i's latest role banner said ("" and 0 since it
	// was last started or killed).
	roles []string
	terms []uint64
}

// roleBanner matches the role-change line tandem node prints.
var roleBanner = regexp.MustCompile(`ROLE CHANGE: (\S+)\s+\(leader (\S+), term (\d+)\)`)

func startBenchProcesses(sec *benchSecurity) (*benchProcs, error) {
	exe, err := os.Executable()
	if err != nil {
		return nil, err
	}
	dir, err := os.MkdirTemp("", "tandem-bench-")
	if err != nil {
		return nil, err
	}
	ms, eps, err := benchMembers()
	if err != nil {
		return nil, err
	}
	var parts []string
	for _, m := range ms {
		parts = append(parts, fmt.Sprintf("%d,%s,%s", m.ID, m.ClientAddr, m.MemberAddr))
	}
	var extra []string
	if sec != nil {
		extra = sec.args()
	}
	bp := &benchProcs{dir: dir, clients: eps, members: strings.Join(parts, "|"), exe: exe, extra: extra,
		cmds: make([]*exec.Cmd, 3), roles: make([]string, 3), terms: make([]uint64, 3)}
	for i := range 3 {
		if err := bp.start(i); err != nil {
			bp.stop()
			return nil, err
		}
	}
	return bp, nil
}

// start runs member i, following the role banners it prints.
func (b *benchProcs) start(i int) error {
	args := append([]string{"node", strconv.Itoa(i), "--members", b.members,
		"--data", filepath.Join(b.dir, fmt.Sprintf("node-%d", i))}, b.extra...)
	cmd := exec.Command(b.exe, args...)
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL}
	out, err := cmd.StdoutPipe()
	if err != nil {
		return err
	}
	if err := cmd.Start(); err != nil {
		return err
	}
	b.mu.Lock()
	b.cmds[i], b.roles[i], b.terms[i] = cmd, "", 0
	b.mu.Unlock()
	go func() {
		sc := bufio.NewScanner(out)
		for sc.Scan() {
			if m := roleBanner.FindStringSubmatch(sc.Text()); m != nil {
				term, _ := strconv.ParseUint(m[3], 10, 64)
				b.mu.Lock()
				if b.cmds[i] == cmd {
					b.roles[i], b.terms[i] = m[1], term
				}
				b.mu.Unlock()
			}
		}
	}()
	return nil
}

// leader returns the member whose last banner says LEADER in the highest term, or -1.
func (b *benchProcs) leader() int {
	b.mu.Lock()
	defer b.mu.Unlock()
	best, term := -1, uint64(0)
	for i, r := range b.roles {
		if r == "LEADER" && b.terms[i] >= term && b.cmds[i] != nil {
			best, term = i, b.terms[i]
		}
	}
	return best
}

func (b *benchProcs) kill(i int) {
	b.mu.Lock()
	cmd := b.cmds[i]
	b.cmds[i], b.roles[i] = nil, ""
	b.mu.Unlock()
	if cmd != nil {
		_ = syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL)
		_ = cmd.Wait()
	}
}

func (b *benchProcs) cpu() []float64 {
	b.mu.Lock()
	defer b.mu.Unlock()
	var out []float64
	for _, c := range b.cmds {
		if c != nil {
			out = append(out, procCPUSeconds(c.Process.Pid))
		}
	}
	return out
}

func (b *benchProcs) rss() []float64 {
	b.mu.Lock()
	defer b.mu.Unlock()
	var out []float64
	for _, c := range b.cmds {
		if c != nil {
			out = append(out, procRSSMiB(c.Process.Pid))
		}
	}
	return out
}

func (b *benchProcs) stop() {
	for i := range b.cmds {
		b.kill(i)
	}
	_ = os.RemoveAll(b.dir)
}

// selfCPUSeconds is this process's user and system CPU time, as a one-member list: in-process,
// members and clients share it.
func selfCPUSeconds() []float64 {
	var ru syscall.Rusage
	_ = syscall.Getrusage(syscall.RUSAGE_SELF, &ru)
	return []float64{tvSeconds(ru.Utime) + tvSeconds(ru.Stime)}
}

// selfRSSMiB is this process's resident memory, as a one-member list (see selfCPUSeconds).
func selfRSSMiB() []float64 { return []float64{procRSSMiB(os.Getpid())} }

func tvSeconds(tv syscall.Timeval) float64 { return float64(tv.Sec) + float64(tv.Usec)/1e6 }

// procRSSMiB reads VmRSS of a process from /proc (0 when unavailable).
func procRSSMiB(pid int) float64 {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return 0
	}
	for _, line := range strings.Split(string(b), "\n") {
		if f := strings.Fields(line); len(f) >= 2 && f[0] == "VmRSS:" {
			kb, _ := strconv.ParseFloat(f[1], 64)
			return kb / 1024
		}
	}
	return 0
}

// procCPUSeconds reads utime+stime of a process from /proc (clock ticks of 1/100 s).
func procCPUSeconds(pid int) float64 {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return 0
	}
	s := string(b)
	f := strings.Fields(s[strings.LastIndexByte(s, ')')+1:])
	if len(f) < 13 {
		return 0
	}
	u, _ := strconv.ParseFloat(f[11], 64)
	st, _ := strconv.ParseFloat(f[12], 64)
	return (u + st) / 100
}
