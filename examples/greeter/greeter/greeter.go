package greeter

import (
	"cmp"
	"context"
	"strings"

	greeterv1 "github.com/concordrpc/concord/examples/greeter/gen/greeter/v1"
	"github.com/concordrpc/concord/examples/greeter/gen/greeter/v1/greeterv1connect"
)

// DefaultTemplate is the greeting template until the config "greeter"
// has a version: "{name}" is replaced by the name greeted.
const DefaultTemplate = "Hello, {name}!"

// Service implements greeterv1connect.GreeterServiceHandler. Requests reach
// it already validated against the rules in greeter.proto.
type Service struct {
	// Config gives the greeting template, read on every call: a
	// *config.Handle[*greeterv1.GreeterConfig] from concord.Config serves
	// it from memory and follows `concord config set greeter`. Nil (or an
	// empty template) means DefaultTemplate.
	Config interface {
		Get() *greeterv1.GreeterConfig
	}
}

var _ greeterv1connect.GreeterServiceHandler = Service{}

// Greet greets one name with the current template.
func (s Service) Greet(_ context.Context, req *greeterv1.GreetRequest) (*greeterv1.GreetResponse, error) {
	tpl := DefaultTemplate
	if s.Config != nil {
		tpl = cmp.Or(s.Config.Get().GetTemplate(), tpl)
	}
	return &greeterv1.GreetResponse{Greeting: strings.ReplaceAll(tpl, "{name}", req.GetName())}, nil
}

// Shout greets in capitals. Its rate limit is declared in greeter.proto
// and applied by the server before this runs.
func (Service) Shout(_ context.Context, req *greeterv1.ShoutRequest) (*greeterv1.ShoutResponse, error) {
	return &greeterv1.ShoutResponse{Shout: "HELLO, " + strings.ToUpper(req.GetName()) + "!"}, nil
}

// GreetMany sends one greeting per name.
func (s Service) GreetMany(ctx context.Context, req *greeterv1.GreetManyRequest, stream greeterv1connect.GreeterServiceGreetManyServerStream) error {
	for _, name := range req.GetNames() {
		res, _ := s.Greet(ctx, &greeterv1.GreetRequest{Name: name})
		if err := stream.Send(&greeterv1.GreetManyResponse{Greeting: res.GetGreeting()}); err != nil {
			return err
		}
	}
	return nil
}
