package main

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"time"
)

// nodePassword is the NATS password of the bench's `concord node`; the
// client-mode greeter gets it from CONCORD_NATS_PASSWORD.
const nodePassword = "rpcbench"

// concordProgram is the concord CLI, run as `concord node` for the
// client-mode rows.
var concordProgram = &program{name: "concord", dir: ".", pkg: "./cmd/concord"}

// A node is a `concord node` process that the client-mode greeter
// connects to. It is started once, before the client-mode rows, so that
// they time the service's own start only.
type node struct {
	url    string // nats://127.0.0.1:port
	cmd    *exec.Cmd
	exited chan error
}

// startNode runs `concord node` from bin with its data under tmp and waits
// until its /readyz answers 200.
func startNode(tmp, bin string) (*node, error) {
	natsAddr, err := freeAddr()
	if err != nil {
		return nil, err
	}
	httpAddr, err := freeAddr()
	if err != nil {
		return nil, err
	}
	dir, err := os.MkdirTemp(tmp, "node-")
	if err != nil {
		return nil, err
	}
	cmd := exec.Command(bin, "node", "-data", filepath.Join(dir, "data"), "-listen", natsAddr, "-http", httpAddr)
	cmd.Env = append(os.Environ(), "CONCORD_NATS_PASSWORD="+nodePassword)
	cmd.Dir = dir
	if err := cmd.Start(); err != nil {
		return nil, err
	}
	n := &node{url: "nats://" + natsAddr, cmd: cmd, exited: make(chan error, 1)}
	go func() { n.exited <- cmd.Wait() }()
	deadline := time.Now().Add(30 * time.Second)
	for {
		err := httpOK(httpAddr + "/readyz")
		if err == nil {
			return n, nil
		}
		select {
		case werr := <-n.exited:
			return nil, fmt.Errorf("concord node exited: %v (last /readyz: %w)", werr, err)
		default:
		}
		if time.Now().After(deadline) {
			n.stop()
			return nil, fmt.Errorf("concord node not ready within 30s: %w", err)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

func (n *node) stop() {
	_ = n.cmd.Process.Kill()
	<-n.exited
}

func httpOK(hostPath string) error {
	ctx, cancel := context.WithTimeout(context.Background(), time.Second)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, "http://"+hostPath, nil)
	if err != nil {
		return err
	}
	res, err := http.DefaultClient.Do(req)
	if err != nil {
		return err
	}
	_, _ = io.Copy(io.Discard, res.Body)
	res.Body.Close()
	if res.StatusCode != http.StatusOK {
		return fmt.Errorf("GET %s: %s", hostPath, res.Status)
	}
	return nil
}
