// Command greeter is Concord's main example: a greeter service with its
// coordination node in one binary. `make run` builds and starts it.
//
//	greeter [-addr 127.0.0.1:8080] [-admin 127.0.0.1:9080] [-data data] [-name concord]
//	        [-cluster 127.0.0.1:6222 -peers host:port,host:port,...]
//	        [-nats nats://host:4222] [-advertise URL]
//	        [-log-format text|json] [-drain-timeout 15s]
//
// Without -addr it serves on all interfaces at $PORT when PORT is set (as
// Cloud Run and Knative set it), else on 127.0.0.1:8080. -log-format json
// (or CONCORD_LOG_FORMAT=json) writes one JSON object per log line.
// -advertise (or CONCORD_ADVERTISE_URL) is the URL other instances call it
// at, for hosts whose name does not resolve (a Kubernetes Deployment's
// pods); -nats can come from CONCORD_NATS_URL. examples/greeter/Dockerfile
// builds its image (README, Deploy).
//
// It serves GreeterService and WelcomeService; WelcomeService calls
// GreeterService by its discovery name, through the registry. By default it
// embeds a single JetStream node under -data. With -cluster
// and -peers, three or more greeters form a Raft cluster and keep
// coordination state on three replicas; their routes require the password
// in CONCORD_ROUTE_PASSWORD (the same on every node), and a greeter in
// cluster mode refuses to start without it. With -nats it runs no node and
// uses an existing NATS cluster, logging in as CONCORD_NATS_USER (default
// "concord") with CONCORD_NATS_PASSWORD. It drains gracefully on SIGTERM or
// SIGINT.
//
// Its greeting template is the live config "greeter" (a
// greeter.v1.GreeterConfig, default "Hello, {name}!"): `concord config set
// greeter '{"template":"Hi, {name}!"}'` changes the next greeting without a
// restart.
package main
