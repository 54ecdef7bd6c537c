package lambdafn_test

import (
	"context"
	"encoding/json"
	"fmt"
	"log/slog"

	greeterv1 "github.com/concordrpc/concord/examples/greeter/gen/greeter/v1"
	"github.com/concordrpc/concord/examples/greeter/gen/greeter/v1/greeterv1concord"
	"github.com/concordrpc/concord/examples/greeter/gen/greeter/v1/greeterv1connect"
	"github.com/concordrpc/concord/lambdafn"
	"github.com/concordrpc/concord/rpc"
)

type greeter struct {
	greeterv1connect.UnimplementedGreeterServiceHandler
}

func (greeter) Greet(_ context.Context, req *greeterv1.GreetRequest) (*greeterv1.GreetResponse, error) {
	return &greeterv1.GreetResponse{Greeting: "Hello, " + req.GetName() + "!"}, nil
}

// Example invokes the adapter directly with the events a Function URL
// sends for two Connect unary calls, a POST with a JSON body and a GET
// with the message in the query string, and prints the responses Lambda
// would return. In a function, main hands the same Handler to lambda.Start
// instead (see the package doc).
func Example() {
	srv := rpc.NewServer(rpc.WithLogger(slog.New(slog.DiscardHandler)))
	greeterv1concord.RegisterGreeterService(srv, greeter{})
	h := lambdafn.New(srv.Handler())

	for _, event := range []string{`{
	  "version": "2.0",
	  "rawPath": "/greeter.v1.GreeterService/Greet",
	  "headers": {"content-type": "application/json", "connect-protocol-version": "1"},
	  "requestContext": {"http": {"method": "POST", "sourceIp": "203.0.113.7"}},
	  "body": "{\"name\":\"Ada\"}",
	  "isBase64Encoded": false
	}`, `{
	  "version": "2.0",
	  "rawPath": "/greeter.v1.GreeterService/Greet",
	  "rawQueryString": "connect=v1&encoding=json&message=%7B%22name%22%3A%22Grace%22%7D",
	  "headers": {},
	  "requestContext": {"http": {"method": "GET", "sourceIp": "203.0.113.7"}}
	}`, `{"version": "1.0", "httpMethod": "GET", "path": "/"}`} {
		out, err := h.Invoke(context.Background(), []byte(event))
		if err != nil {
			fmt.Println(err)
			return
		}
		var resp struct {
			StatusCode      int               `json:"statusCode"`
			Headers         map[string]string `json:"headers"`
			Body            string            `json:"body"`
			IsBase64Encoded bool              `json:"isBase64Encoded"`
		}
		if err := json.Unmarshal(out, &resp); err != nil {
			fmt.Println(err)
			return
		}
		fmt.Println(resp.StatusCode, resp.Headers["Content-Type"], resp.Body)
	}
	// Output:
	// 200 application/json {"greeting":"Hello, Ada!"}
	// 200 application/json {"greeting":"Hello, Grace!"}
	// 400 application/json {"code":"invalid_argument","message":"lambdafn: event has payload format version \"1.0\", want \"2.0\" (a Function URL, or an API Gateway HTTP API with payload format 2.0)"}
}
