package main

import (
	"context"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"time"
)

const (
	pollEvery      = 200 * time.Microsecond
	attemptTimeout = time.Second
	startDeadline  = 10 * time.Second
)

// A program is a binary built for the start-up rows.
type program struct {
	name string
	dir  string // module directory to build in, relative to the repository root
	pkg  string
	// args returns the arguments for serving on addr with dataDir, a fresh
	// empty directory per start (also the working directory).
	args func(addr, dataDir string) []string
	env  []string // added to the environment, if any
}

// buildPrograms compiles every program in ps into dir and returns the
// binaries' paths. Programs with the same name share one binary.
func buildPrograms(repo, dir string, ps ...*program) (map[*program]string, error) {
	bins := map[*program]string{}
	byName := map[string]string{}
	for _, p := range ps {
		if _, ok := bins[p]; ok {
			continue
		}
		bin := filepath.Join(dir, p.name)
		if b, ok := byName[p.name]; ok {
			bins[p] = b
			continue
		}
		byName[p.name] = bin
		cmd := exec.Command("go", "build", "-o", bin, p.pkg)
		cmd.Dir = filepath.Join(repo, p.dir)
		cmd.Stdout, cmd.Stderr = os.Stderr, os.Stderr
		if err := cmd.Run(); err != nil {
			return nil, fmt.Errorf("build %s in %s: %w", p.pkg, cmd.Dir, err)
		}
		bins[p] = bin
	}
	return bins, nil
}

// A process is a started program, serving on a free loopback port with a
// fresh data directory.
type process struct {
	bin     string
	addr    string
	dataDir string
	cmd     *exec.Cmd
	start   time.Time // just before exec
	exited  chan error
}

// startProcess execs bin, serving on addr, with a fresh data directory
// under tmp. Call stop when done.
func startProcess(tmp, bin string, p *program, addr string) (*process, error) {
	dataDir, err := os.MkdirTemp(tmp, "run-")
	if err != nil {
		return nil, err
	}
	cmd := exec.Command(bin, p.args(addr, dataDir)...) // output goes to /dev/null
	cmd.Dir = dataDir
	if p.env != nil {
		cmd.Env = append(os.Environ(), p.env...)
	}
	pr := &process{bin: bin, addr: addr, dataDir: dataDir, cmd: cmd, exited: make(chan error, 1)}
	pr.start = time.Now()
	if err := cmd.Start(); err != nil {
		os.RemoveAll(dataDir)
		return nil, err
	}
	go func() { pr.exited <- cmd.Wait() }()
	return pr, nil
}

// stop kills the process, waits for it and removes its data directory.
func (pr *process) stop() {
	_ = pr.cmd.Process.Kill()
	<-pr.exited
	os.RemoveAll(pr.dataDir)
}

// waitFor polls check every pollEvery, each attempt bounded by
// attemptTimeout, until it succeeds, and returns the time from exec to
// success. It fails if the process exits or startDeadline passes.
func (pr *process) waitFor(check func(context.Context) error) (time.Duration, error) {
	deadline := pr.start.Add(startDeadline)
	for {
		ctx, cancel := context.WithTimeout(context.Background(), attemptTimeout)
		err := check(ctx)
		cancel()
		if err == nil {
			return time.Since(pr.start), nil
		}
		select {
		case werr := <-pr.exited:
			pr.exited <- werr // for stop
			return 0, fmt.Errorf("%s exited before it answered: %v (last probe error: %w)", pr.bin, werr, err)
		default:
		}
		if time.Now().After(deadline) {
			return 0, fmt.Errorf("no answer within %v: %w", startDeadline, err)
		}
		time.Sleep(pollEvery)
	}
}

// freeAddr returns a loopback address with a port that was free a moment
// ago.
func freeAddr() (string, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return "", err
	}
	port := ln.Addr().(*net.TCPAddr).Port
	if err := ln.Close(); err != nil {
		return "", err
	}
	return net.JoinHostPort("127.0.0.1", strconv.Itoa(port)), nil
}
