package rpc

import (
	"context"
	"fmt"
	"net"
	"sort"
	"sync"
	"time"
)

// DefaultDNSRefresh is how often a DNSResolver re-resolves a name.
const DefaultDNSRefresh = 5 * time.Second

// DNSResolver resolves each service to the addresses of a DNS name, such as
// a Kubernetes headless service ("greeter.default.svc.cluster.local:8080"),
// whose A and AAAA records list the ready pods. It looks a name up on first
// use and then refreshes it every interval in the background; Resolve serves
// the last answer without a lookup, so the view is at most one interval
// plus the DNS TTL old. A failed refresh keeps the previous answer. It is
// safe for concurrent use; Close stops the refreshes.
type DNSResolver struct {
	targets  map[string]string // discovery name -> host:port
	scheme   string
	interval time.Duration
	resolver *net.Resolver

	mu      sync.Mutex
	views   map[string][]Instance
	started map[string]bool
	stop    chan struct{}
	wg      sync.WaitGroup
	closed  bool
}

// NewDNSResolver returns a resolver for targets, which maps discovery names
// to "host:port". Instances get base URLs "http://ip:port"; interval <= 0
// means DefaultDNSRefresh.
func NewDNSResolver(targets map[string]string, interval time.Duration) *DNSResolver {
	if interval <= 0 {
		interval = DefaultDNSRefresh
	}
	return &DNSResolver{
		targets: targets, scheme: "http", interval: interval, resolver: net.DefaultResolver,
		views: map[string][]Instance{}, started: map[string]bool{}, stop: make(chan struct{}),
	}
}

// Resolve implements Resolver. The first call for a service looks the name
// up, bounded by ctx; it fails if the name has no address.
func (r *DNSResolver) Resolve(ctx context.Context, service string) ([]Instance, error) {
	r.mu.Lock()
	if v := r.views[service]; len(v) > 0 {
		r.mu.Unlock()
		return v, nil
	}
	target, ok := r.targets[service]
	closed := r.closed
	r.mu.Unlock()
	if !ok {
		return nil, fmt.Errorf("rpc: dns resolver has no name for %q", service)
	}
	if closed {
		return nil, fmt.Errorf("rpc: dns resolver closed")
	}
	insts, err := r.lookup(ctx, target)
	if err != nil {
		return nil, err
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	r.views[service] = insts
	if !r.started[service] && !r.closed {
		r.started[service] = true
		r.wg.Add(1)
		go r.refresh(service, target)
	}
	return insts, nil
}

func (r *DNSResolver) lookup(ctx context.Context, target string) ([]Instance, error) {
	host, port, err := net.SplitHostPort(target)
	if err != nil {
		return nil, fmt.Errorf("rpc: dns target %q: %w", target, err)
	}
	addrs, err := r.resolver.LookupHost(ctx, host)
	if err != nil {
		return nil, fmt.Errorf("rpc: resolve %s: %w", host, err)
	}
	if len(addrs) == 0 {
		return nil, fmt.Errorf("rpc: resolve %s: no addresses", host)
	}
	sort.Strings(addrs)
	out := make([]Instance, len(addrs))
	for i, a := range addrs {
		hp := net.JoinHostPort(a, port)
		out[i] = Instance{ID: hp, BaseURL: r.scheme + "://" + hp}
	}
	return out, nil
}

func (r *DNSResolver) refresh(service, target string) {
	defer r.wg.Done()
	t := time.NewTicker(r.interval)
	defer t.Stop()
	for {
		select {
		case <-r.stop:
			return
		case <-t.C:
		}
		ctx, cancel := context.WithTimeout(context.Background(), r.interval)
		insts, err := r.lookup(ctx, target)
		cancel()
		if err != nil {
			continue // keep the last good answer
		}
		r.mu.Lock()
		r.views[service] = insts
		r.mu.Unlock()
	}
}

// Close stops the background refreshes. It is idempotent.
func (r *DNSResolver) Close() error {
	r.mu.Lock()
	if !r.closed {
		r.closed = true
		close(r.stop)
	}
	r.mu.Unlock()
	r.wg.Wait()
	return nil
}
