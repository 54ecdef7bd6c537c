// Package lambdafn serves Concord RPCs from an AWS Lambda function behind a
// Function URL or an API Gateway HTTP API: function mode.
//
// A Handler adapts any http.Handler, normally an rpc.Server's, to Lambda's
// HTTP events in payload format 2.0, which Function URLs and HTTP APIs share.
// It implements the aws-lambda-go lambda.Handler interface, so main is:
//
//	func main() {
//		srv := rpc.NewServer()
//		greeterv1concord.RegisterGreeterService(srv, &greeter{})
//		h, err := srv.ServeHandler() // reports a failed registration; health says SERVING
//		if err != nil {
//			log.Fatal(err)
//		}
//		lambda.Start(lambdafn.New(h)) // never returns
//	}
//
// The package takes no process-wide resource: lambda.Start, which owns the
// process (it exits when the Runtime API fails), is main's call. An App
// serves the same way through App.RunFunction (see below).
//
// # What is served
//
// Each invocation is one HTTP request, answered in one buffered response:
//
//   - Connect unary calls with JSON or binary (application/proto) bodies, by
//     POST or by GET (the message in the query string, for methods without
//     side effects).
//   - Bodies in base64 both ways: a request body marked isBase64Encoded is
//     decoded; an answer is sent as text when it is uncompressed UTF-8 of a
//     textual type (JSON, text/*), in base64 otherwise.
//   - Headers both ways: request headers arrive with several values joined
//     by commas, as both platforms send them, and the event's cookies
//     become one Cookie header;
//     several values of a response header are joined by commas, and each
//     Set-Cookie becomes an entry of the answer's cookies. HTTP trailers are
//     folded into the headers, since a buffered answer has none.
//   - The handler's status code and body pass through unchanged, so the
//     handler's Connect errors reach callers as they are.
//
// The request's context is the invocation's: handlers can read the request ID
// and function ARN with lambdacontext.FromContext. Through an API Gateway
// stage other than $default, paths start with the stage name; wrap the
// handler in http.StripPrefix.
//
// # Streaming is refused
//
// Streaming calls (Connect streaming, and all gRPC and gRPC-Web calls, whose
// unary and streaming calls share a content type) are answered unimplemented
// in the caller's protocol, before the handler runs: a buffered invocation
// cannot carry a stream in either direction, and gRPC needs HTTP/2 trailers,
// which a Function URL or an HTTP API do not relay. Serving streams would
// need Lambda's response streaming mode, which this package does not use.
//
// # Deadlines
//
// A call's context ends WithDeadlineMargin (default 100 ms) before the
// invocation's deadline (the Runtime API's Lambda-Runtime-Deadline-Ms, which
// aws-lambda-go puts in the invocation's context), or earlier if the caller's
// Connect-Timeout-Ms or the method's policy says so. A call near the end of
// its invocation thus fails with deadline_exceeded and an answer, instead of
// being frozen with the process mid-call and killed at the timeout with none.
// (A context with no deadline, as in a direct call to Invoke, sets none.)
// An invocation with less than the margin left is answered
// deadline_exceeded without calling the handler. A handler that ignores its
// context gets half the margin to answer after its context ended; then the
// adapter answers deadline_exceeded itself and leaves the handler's
// goroutine behind.
//
// # Limits
//
// A request body over WithReadMaxBytes (default 4 MiB, rpc's default read
// limit) is refused with resource_exhausted before the handler runs. An
// answer whose payload (headers, base64 and all) is over Lambda's 6 MB limit
// for synchronous responses, MaxResponseBytes, is replaced by
// resource_exhausted; a handler's writes fail once its body passes the limit,
// so a runaway answer cannot exhaust memory.
//
// # Failures
//
// Invoke never fails the invocation: what goes wrong in the adapter is an
// HTTP answer with a Connect error in the caller's protocol, and in Connect
// JSON when the event cannot be decoded: invalid_argument for an event that
// is not a payload format 2.0 HTTP event (bad JSON, another version, no
// method, a relative path, invalid base64, control characters in headers),
// resource_exhausted for the limits above, unimplemented for streams,
// deadline_exceeded as above, and internal when the handler panics.
//
// # An App in function mode
//
// An App (package concord) serves in function mode through
// App.RunFunction, which hands its handler to lambda.Start:
//
//	app := concord.New(concord.WithCoordOptions(
//		coord.WithClient([]string{os.Getenv("CONCORD_NATS_URL")}, auth)))
//	greeterv1concord.RegisterGreeterService(app, &greeter{})
//	err := app.RunFunction(context.Background(), func(h http.Handler) error {
//		lambda.Start(lambdafn.New(h)) // never returns
//		return nil
//	})
//
// There the App opens no listener, registers no instance, keeps no local
// store (Badger) and connects to coordination in client mode only, when a
// call first needs it; a call that follows a pause (a freeze between
// invocations) first makes sure the connection still works, and a lock
// whose lease ended during the freeze says so through Valid before the
// handler writes. See App.RunFunction. This package does not import the
// App's: a function that serves an rpc.Server links no coordination code.
package lambdafn
