package baseline

import (
	"context"
	"fmt"

	greeterv1 "github.com/concordrpc/concord/examples/greeter/gen/greeter/v1"
	"github.com/concordrpc/concord/examples/greeter/gen/greeter/v1/greeterv1connect"
)

// Name is the name every benchmark request carries: 61 characters, so it
// passes greeter.proto's max_len of 64 (which counts characters), and 96
// bytes of UTF-8, so the encoded request is 98 bytes and the response 106.
const Name = "Παναγιώτης Κωνσταντινόπουλος-Ζαχαρίου of Thessaloniki, Greece"

// Request returns the benchmark request. Each call returns a new message.
func Request() *greeterv1.GreetRequest { return &greeterv1.GreetRequest{Name: Name} }

// wantGreeting is the response to Request.
const wantGreeting = "Hello, " + Name + "!"

// Response returns the response to Request.
func Response() *greeterv1.GreetResponse { return &greeterv1.GreetResponse{Greeting: wantGreeting} }

// Check reports whether res is the answer to Request, so that a benchmark
// never counts an error path as a fast call.
func Check(res *greeterv1.GreetResponse) error {
	if got := res.GetGreeting(); got != wantGreeting {
		return fmt.Errorf("unexpected greeting %q", got)
	}
	return nil
}

// Greeter is the service every benchmarked server runs. It is the example
// greeter's logic, copied because that package is internal to the example.
type Greeter struct {
	greeterv1connect.UnimplementedGreeterServiceHandler
}

var _ greeterv1connect.GreeterServiceHandler = Greeter{}

// Greet greets one name.
func (Greeter) Greet(_ context.Context, req *greeterv1.GreetRequest) (*greeterv1.GreetResponse, error) {
	return &greeterv1.GreetResponse{Greeting: "Hello, " + req.GetName() + "!"}, nil
}
