// Command greeter is Concord's main example: a greeter service with its
// coordination node in one binary. `make run` builds and starts it.
//
//	greeter [-addr 127.0.0.1:8080] [-admin 127.0.0.1:9080] [-data data] [-name concord]
//	        [-cluster 127.0.0.1:6222 -peers host:port,host:port,...]
//	        [-nats nats://host:4222]
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
