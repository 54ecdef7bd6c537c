package main

import (
	"errors"
	"fmt"
	"net"
	"strconv"
	"strings"
)

// stsPeers is a cluster node's place in its StatefulSet, as
// `concord node -peers-from-statefulset` derives it.
type stsPeers struct {
	ordinal int
	self    string   // this node's route address, as its peers dial it
	listen  string   // the default route listen address: all interfaces at self's port
	peers   []string // the route addresses of the other replicas, by ordinal
}

// statefulSetPeers derives a node's cluster routes from the environment a
// StatefulSet gives its pods: the pod name is "<statefulset>-<ordinal>",
// and the pods are <statefulset>-0 … <statefulset>-(replicas-1). Each
// peer's route address is template with {name} replaced by the peer's pod
// name and {ordinal} by its ordinal. With a headless Service the template
// is "{name}.<service>.<namespace>.svc.<cluster domain>:<route port>"
// (deploy/kubernetes). {ordinal} serves nodes that share one host and
// differ by port instead, e.g. "127.0.0.1:622{ordinal}": a local cluster,
// or this package's test.
//
// The replica count is given, not discovered: a node must know the whole
// cluster at start, and a pod whose ordinal is not below it (the
// StatefulSet was scaled without updating the count) is refused.
func statefulSetPeers(pod string, replicas int, template string) (stsPeers, error) {
	i := strings.LastIndexByte(pod, '-')
	ordinal, err := strconv.Atoi(pod[i+1:])
	if i <= 0 || err != nil || ordinal < 0 || pod[i+1:] != strconv.Itoa(ordinal) {
		return stsPeers{}, fmt.Errorf("pod name %q is not <statefulset>-<ordinal> (set POD_NAME from metadata.name)", pod)
	}
	if replicas < 1 {
		return stsPeers{}, errors.New("-replicas (env CONCORD_REPLICAS) must be the StatefulSet's replica count, at least 1")
	}
	if ordinal >= replicas {
		return stsPeers{}, fmt.Errorf("pod %s has ordinal %d, not below -replicas %d: update CONCORD_REPLICAS with the StatefulSet's replicas", pod, ordinal, replicas)
	}
	if !strings.Contains(template, "{name}") && !strings.Contains(template, "{ordinal}") {
		return stsPeers{}, fmt.Errorf("-peer-template %q (env CONCORD_PEER_TEMPLATE) names no {name} or {ordinal}: every peer would have the same address", template)
	}
	base := pod[:i]
	s := stsPeers{ordinal: ordinal}
	for j := range replicas {
		addr := strings.NewReplacer("{name}", base+"-"+strconv.Itoa(j), "{ordinal}", strconv.Itoa(j)).Replace(template)
		host, port, err := net.SplitHostPort(addr)
		if err != nil || host == "" || port == "" {
			return stsPeers{}, fmt.Errorf("-peer-template %q gives %q, not host:port", template, addr)
		}
		if j == ordinal {
			s.self, s.listen = addr, net.JoinHostPort("", port)
			continue
		}
		s.peers = append(s.peers, addr)
	}
	return s, nil
}
