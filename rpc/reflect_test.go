package rpc_test

import (
	"errors"
	"slices"
	"testing"

	"connectrpc.com/connect/v2"
	"connectrpc.com/grpcreflect/v2"
	"google.golang.org/protobuf/reflect/protodesc"
	"google.golang.org/protobuf/reflect/protoreflect"
	"google.golang.org/protobuf/reflect/protoregistry"
	"google.golang.org/protobuf/types/descriptorpb"
	"google.golang.org/protobuf/types/dynamicpb"

	greeterv1 "github.com/concordrpc/concord/examples/greeter/gen/greeter/v1"
)

// TestReflectionRequests drives every reflection request of the v1 service
// through grpcreflect's client, and checks that the descriptors served,
// which rpc builds on the first call rather than at init, are complete.
func TestReflectionRequests(t *testing.T) {
	ts := startServer(t, quietServer(), &testGreeter{})
	client := grpcreflect.NewClient(connect.NewClient(connectTransport(ts.url)))
	stream := client.NewStream(t.Context())
	defer stream.Close()

	names, err := stream.ListServices()
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range []protoreflect.FullName{"greeter.v1.GreeterService", "grpc.health.v1.Health",
		"grpc.reflection.v1.ServerReflection", "grpc.reflection.v1alpha.ServerReflection"} {
		if !slices.Contains(names, want) {
			t.Errorf("ListServices: no %s in %v", want, names)
		}
	}

	// Each service's file, with what it imports, must build.
	for _, name := range names {
		files, err := stream.FileContainingSymbol(name)
		if err != nil {
			t.Fatalf("FileContainingSymbol(%s): %v", name, err)
		}
		if _, err := protodesc.NewFiles(withImports(t, stream, files)); err != nil {
			t.Errorf("%s: the files served do not build: %v", name, err)
		}
	}

	greeterPath := greeterv1.File_greeter_v1_greeter_proto.Path()
	files, err := stream.FileByFilename(greeterPath)
	if err != nil || len(files) == 0 || files[0].GetName() != greeterPath {
		t.Fatalf("FileByFilename(%s): %v, %d files", greeterPath, err, len(files))
	}

	_, err = stream.FileContainingSymbol("no.such.Service")
	var cerr *connect.Error
	if !errors.As(err, &cerr) || cerr.Code() != connect.CodeNotFound {
		t.Errorf("unknown symbol: got %v, want a NOT_FOUND error response", err)
	}

	// protovalidate's rules extend FieldOptions; every binary with rpc
	// links them.
	const fieldOptions = "google.protobuf.FieldOptions"
	nums, err := stream.AllExtensionNumbers(fieldOptions)
	if err != nil || len(nums) == 0 {
		t.Fatalf("AllExtensionNumbers(%s): %v %v", fieldOptions, err, nums)
	}
	files, err = stream.FileContainingExtension(fieldOptions, nums[0])
	if err != nil || len(files) == 0 {
		t.Fatalf("FileContainingExtension(%s, %d): %v", fieldOptions, nums[0], err)
	}
}

// TestReflectionV1Alpha calls the deprecated v1alpha service, which older
// tools use, with messages built from the descriptors reflection serves.
func TestReflectionV1Alpha(t *testing.T) {
	ts := startServer(t, quietServer(), &testGreeter{})
	stream := grpcreflect.NewClient(connect.NewClient(connectTransport(ts.url))).NewStream(t.Context())
	defer stream.Close()
	const path = "grpc/reflection/v1alpha/reflection.proto"
	files, err := stream.FileByFilename(path)
	if err != nil || len(files) != 1 {
		t.Fatalf("FileByFilename(%s): %v, %d files", path, err, len(files))
	}
	fd, err := protodesc.NewFile(files[0], protoregistry.GlobalFiles)
	if err != nil {
		t.Fatal(err)
	}
	request := fd.Messages().ByName("ServerReflectionRequest")
	response := fd.Messages().ByName("ServerReflectionResponse")
	service := fd.Services().ByName("ServerReflection")
	if request == nil || response == nil || service == nil {
		t.Fatalf("%s lacks the reflection messages or service", path)
	}

	spec := connect.Spec{
		StreamType: connect.StreamTypeBidi,
		Procedure:  "/grpc.reflection.v1alpha.ServerReflection/ServerReflectionInfo",
		Schema:     service.Methods().ByName("ServerReflectionInfo"),
	}
	cs, err := connect.NewClient(connectTransport(ts.url)).CallClientStream(t.Context(), spec)
	if err != nil {
		t.Fatal(err)
	}
	req := dynamicpb.NewMessage(request)
	req.Set(request.Fields().ByName("list_services"), protoreflect.ValueOfString("*"))
	if err := cs.Send(req); err != nil {
		t.Fatal(err)
	}
	if err := cs.CloseSend(); err != nil {
		t.Fatal(err)
	}
	res := dynamicpb.NewMessage(response)
	if err := cs.Receive(res); err != nil {
		t.Fatal(err)
	}
	list := res.Get(response.Fields().ByName("list_services_response")).Message()
	services := list.Get(list.Descriptor().Fields().ByName("service")).List()
	var got []string
	for i := range services.Len() {
		s := services.Get(i).Message()
		got = append(got, s.Get(s.Descriptor().Fields().ByName("name")).String())
	}
	if !slices.Contains(got, "greeter.v1.GreeterService") {
		t.Errorf("v1alpha list_services: %v", got)
	}
	_ = cs.Close()
}

// withImports adds to files every file they import that is missing, as a
// client does, so that the set builds on its own.
func withImports(t *testing.T, stream *grpcreflect.ClientStream, files []*descriptorpb.FileDescriptorProto) *descriptorpb.FileDescriptorSet {
	t.Helper()
	have := map[string]bool{}
	for _, f := range files {
		have[f.GetName()] = true
	}
	for i := 0; i < len(files); i++ {
		for _, dep := range files[i].GetDependency() {
			if have[dep] {
				continue
			}
			more, err := stream.FileByFilename(dep)
			if err != nil {
				t.Fatalf("FileByFilename(%s): %v", dep, err)
			}
			for _, f := range more {
				if !have[f.GetName()] {
					have[f.GetName()] = true
					files = append(files, f)
				}
			}
		}
	}
	return &descriptorpb.FileDescriptorSet{File: files}
}
