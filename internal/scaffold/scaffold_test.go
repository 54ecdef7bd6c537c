package scaffold

import (
	"errors"
	"slices"
	"strings"
	"testing"

	"golang.org/x/mod/modfile"
)

func TestServiceName(t *testing.T) {
	for _, tc := range []struct{ in, want string }{
		{"Hello", "HelloService"},
		{"HelloService", "HelloService"},
		{"OrderBook2", "OrderBook2Service"},
		{"HTTPProxy", "HTTPProxyService"},
		{"hello", ""},
		{"Hello_World", ""},
		{"Hello-World", ""},
		{"9Lives", ""},
		{"Service", ""},
		{"Héllo", ""},
		{"", ""},
	} {
		got, err := ServiceName(tc.in)
		if got != tc.want || (tc.want == "") != errors.Is(err, ErrInvalid) {
			t.Errorf("ServiceName(%q) = %q, %v; want %q", tc.in, got, err, tc.want)
		}
	}
}

func TestServiceFromDir(t *testing.T) {
	for _, tc := range []struct{ in, want string }{
		{"hello", "HelloService"},
		{"order-book", "OrderBookService"},
		{"order_book.v2", "OrderBookV2Service"},
		{"accounts-service", "AccountsService"},
		{"123", ""},
		{"-", ""},
	} {
		got, err := ServiceFromDir(tc.in)
		if got != tc.want || (tc.want == "") != errors.Is(err, ErrInvalid) {
			t.Errorf("ServiceFromDir(%q) = %q, %v; want %q", tc.in, got, err, tc.want)
		}
	}
}

func TestRender(t *testing.T) {
	mod, err := Render(Config{
		Module: "example.com/shop", Service: "OrderBookService",
		ConcordVersion: ReplacedVersion, ConcordReplace: "/src/concord",
	})
	if err != nil {
		t.Fatal(err)
	}
	if mod.Procedure != "/orderbook.v1.OrderBookService/Greet" || mod.Binary != "orderbook" || mod.ProtoPath != "proto/orderbook/v1/orderbook.proto" {
		t.Errorf("Render: procedure %q, binary %q, proto %q", mod.Procedure, mod.Binary, mod.ProtoPath)
	}
	files := map[string]File{}
	for _, f := range mod.Files {
		files[f.Path] = f
	}
	var paths []string
	for p := range files {
		paths = append(paths, p)
	}
	slices.Sort(paths)
	want := []string{
		".gitignore", "Makefile", "README.md", "buf.gen.yaml", "buf.yaml", "go.mod", "handler.go",
		"main.go", "main_test.go", "proto/orderbook/v1/orderbook.proto", "tools/go.mod",
	}
	if !slices.Equal(paths, want) {
		t.Errorf("Render wrote %q, want %q", paths, want)
	}
	for p, f := range files {
		if f.NeedsGenerated != strings.HasSuffix(p, ".go") {
			t.Errorf("%s: NeedsGenerated = %v", p, f.NeedsGenerated)
		}
	}

	gomod, err := modfile.Parse("go.mod", files["go.mod"].Data, nil)
	if err != nil {
		t.Fatal(err)
	}
	if gomod.Module.Mod.Path != "example.com/shop" || len(gomod.Require) != 1 ||
		gomod.Require[0].Mod.String() != ConcordModule+"@"+ReplacedVersion ||
		len(gomod.Replace) != 1 || gomod.Replace[0].New.Path != "/src/concord" || len(gomod.Tool) != len(Tools) {
		t.Errorf("go.mod:\n%s", files["go.mod"].Data)
	}

	proto := string(files["proto/orderbook/v1/orderbook.proto"].Data)
	for _, s := range []string{
		"package orderbook.v1;",
		`option go_package = "example.com/shop/gen/orderbook/v1;orderbookv1";`,
		"service OrderBookService {",
		`option (concord.v1.service) = {name: "orderbook"};`,
		`timeout: "2s"`,
		"rate_limit: {",
		"(buf.validate.field).string",
	} {
		if !strings.Contains(proto, s) {
			t.Errorf("the .proto lacks %q:\n%s", s, proto)
		}
	}
	for _, s := range []string{
		`"example.com/shop/gen/orderbook/v1/orderbookv1concord"`,
		"orderbookv1concord.RegisterOrderBookService(app, orderbookService{})",
	} {
		if !strings.Contains(string(files["main.go"].Data), s) {
			t.Errorf("main.go lacks %q", s)
		}
	}
}

func TestRenderPublished(t *testing.T) {
	mod, err := Render(Config{Module: "example.com/hello", Service: "HelloService", ConcordVersion: "v0.3.1"})
	if err != nil {
		t.Fatal(err)
	}
	gomod, err := modfile.Parse("go.mod", mod.Files[0].Data, nil)
	if err != nil {
		t.Fatal(err)
	}
	if len(gomod.Replace) != 0 || gomod.Require[0].Mod.Version != "v0.3.1" {
		t.Errorf("go.mod:\n%s", mod.Files[0].Data)
	}
}

func TestRenderInvalid(t *testing.T) {
	for _, c := range []Config{
		{Module: "hello", Service: "HelloService", ConcordVersion: "v0.1.0"},
		{Module: "example.com/hello", Service: "Hello", ConcordVersion: "v0.1.0"},
		{Module: "example.com/hello", Service: "HelloService", ConcordVersion: "(devel)"},
		{Module: "example.com/hello", Service: "HelloService", ConcordVersion: ReplacedVersion, ConcordReplace: "relative/concord"},
	} {
		if _, err := Render(c); !errors.Is(err, ErrInvalid) {
			t.Errorf("Render(%+v) = %v, want ErrInvalid", c, err)
		}
	}
}
