package main

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"
)

// readyPrefix starts the one line a server child prints on stdout once it
// accepts clients.
const readyPrefix = "PEERS-READY"

// freePort returns a TCP port on 127.0.0.1 that was free a moment ago:
// listen on :0, note the port, close. A caller that loses the race to
// another process retries with a new one (see startWithPorts).
func freePort() (int, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, err
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port, nil
}

// freePorts returns n distinct free ports.
func freePorts(n int) ([]int, error) {
	seen := map[int]bool{}
	var out []int
	for len(out) < n {
		p, err := freePort()
		if err != nil {
			return nil, err
		}
		if !seen[p] {
			seen[p] = true
			out = append(out, p)
		}
	}
	return out, nil
}

// child is a server running in its own process.
type child struct {
	name string
	cmd  *exec.Cmd
	log  string // its stderr (and stdout after the ready line)
	done chan struct{}
	err  error // set before done closes
}

// PID is the child's process id.
func (c *child) PID() int { return c.cmd.Process.Pid }

// startChild runs argv with stdout and stderr going to logPath, and waits
// (up to timeout) until ready says the child is up: either a line on
// stdout starting with readyPrefix (ready == nil) or ready returning nil.
// The child gets SIGKILL when this process dies (Pdeathsig), so a crashed
// run leaves no servers behind.
func startChild(ctx context.Context, name, logPath string, timeout time.Duration, ready func(context.Context) error, argv ...string) (*child, error) {
	lf, err := os.Create(logPath)
	if err != nil {
		return nil, err
	}
	cmd := exec.Command(argv[0], argv[1:]...)
	cmd.Stderr = lf
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL, Setpgid: true}
	var stdout io.ReadCloser
	if ready == nil {
		stdout, err = cmd.StdoutPipe()
		if err != nil {
			lf.Close()
			return nil, err
		}
	} else {
		cmd.Stdout = lf
	}
	if err := cmd.Start(); err != nil {
		lf.Close()
		return nil, fmt.Errorf("start %s: %w", name, err)
	}
	c := &child{name: name, cmd: cmd, log: logPath, done: make(chan struct{})}
	readyLine := make(chan string, 1)
	if stdout != nil {
		go func() {
			sc := bufio.NewScanner(stdout)
			for sc.Scan() {
				line := sc.Text()
				if strings.HasPrefix(line, readyPrefix) {
					readyLine <- line
					break
				}
				fmt.Fprintln(lf, line)
			}
			io.Copy(lf, stdout) // keep draining so the child never blocks
		}()
	}
	go func() {
		c.err = cmd.Wait()
		lf.Close()
		close(c.done)
	}()
	wctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	if ready != nil {
		for {
			if err := ready(wctx); err == nil {
				return c, nil
			}
			select {
			case <-c.done:
				return nil, fmt.Errorf("%s exited during startup (%v): %s", name, c.err, tail(logPath))
			case <-wctx.Done():
				c.Stop()
				return nil, fmt.Errorf("%s not ready after %v: %s", name, timeout, tail(logPath))
			case <-time.After(100 * time.Millisecond):
			}
		}
	}
	select {
	case <-readyLine:
		return c, nil
	case <-c.done:
		return nil, fmt.Errorf("%s exited during startup (%v): %s", name, c.err, tail(logPath))
	case <-wctx.Done():
		c.Stop()
		return nil, fmt.Errorf("%s not ready after %v: %s", name, timeout, tail(logPath))
	}
}

// Stop sends SIGTERM, waits up to 10 s, then SIGKILLs the child's process
// group.
func (c *child) Stop() error {
	select {
	case <-c.done:
		return nil
	default:
	}
	_ = c.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-c.done:
		return nil
	case <-time.After(10 * time.Second):
	}
	_ = syscall.Kill(-c.cmd.Process.Pid, syscall.SIGKILL)
	<-c.done
	return nil
}

// tail is the end of a log file, for error messages.
func tail(path string) string {
	b, err := os.ReadFile(path)
	if err != nil {
		return ""
	}
	const max = 2000
	if len(b) > max {
		b = b[len(b)-max:]
	}
	return strings.TrimSpace(string(b))
}

// portInUse says whether a startup log shows a lost port race.
func portInUse(log string) bool {
	return strings.Contains(log, "address already in use")
}

// startWithPorts starts a child on n fresh free ports, retrying (up to 5
// times) when another process took a port between the check and the bind.
func startWithPorts(n int, start func(ports []int) (*child, error)) (*child, []int, error) {
	var last error
	for attempt := 0; attempt < 5; attempt++ {
		ports, err := freePorts(n)
		if err != nil {
			return nil, nil, err
		}
		c, err := start(ports)
		if err == nil {
			return c, ports, nil
		}
		last = err
		if !portInUse(strings.ToLower(err.Error())) {
			break
		}
	}
	return nil, nil, last
}

// selfExe is this program's binary, re-executed for the server modes.
func selfExe() (string, error) {
	p, err := os.Executable()
	if err != nil {
		return "", err
	}
	return filepath.EvalSymlinks(p)
}

// tempDir makes a run directory that removeAll cleans later.
func tempDir(pattern string) (string, error) {
	return os.MkdirTemp("", pattern)
}

// errUnavailable marks a target that cannot run on this machine (its
// server is not installed): skipped with a note, not a failure.
var errUnavailable = errors.New("unavailable")

func itoa(i int) string { return strconv.Itoa(i) }
