package greeter

import (
	"context"
	"errors"

	"connectrpc.com/connect/v2"

	greeterv1 "github.com/concordrpc/concord/examples/greeter/gen/greeter/v1"
	"github.com/concordrpc/concord/examples/greeter/gen/greeter/v1/greeterv1connect"
)

// Welcome implements greeterv1connect.WelcomeServiceHandler over a
// GreeterService client, which reaches the greeter by its discovery name
// (greeterv1concord.NewGreeterServiceClient(app)), wherever it runs.
type Welcome struct {
	Greeter greeterv1connect.GreeterServiceClient
}

var _ greeterv1connect.WelcomeServiceHandler = Welcome{}

// Welcome greets through GreeterService and adds a welcome. The caller's
// deadline travels on to GreeterService with ctx.
func (w Welcome) Welcome(ctx context.Context, req *greeterv1.WelcomeRequest) (*greeterv1.WelcomeResponse, error) {
	res, err := w.Greeter.Greet(ctx, &greeterv1.GreetRequest{Name: req.GetName()})
	if err != nil {
		// A downstream error is not ours to forward as is: connect would
		// scrub it to internal. Say what failed, with its code.
		return nil, connect.NewError(connect.CodeOf(err), "greeter: "+errorMessage(err)).WithCause(err)
	}
	return &greeterv1.WelcomeResponse{Welcome: res.GetGreeting() + " Welcome to Concord."}, nil
}

func errorMessage(err error) string {
	var cerr *connect.Error
	if errors.As(err, &cerr) {
		return cerr.Message()
	}
	return err.Error()
}
