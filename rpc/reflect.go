package rpc

import (
	"context"
	"errors"
	"fmt"
	"io"
	"slices"
	"strings"
	"sync"

	"connectrpc.com/connect/v2"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/reflect/protodesc"
	"google.golang.org/protobuf/reflect/protoreflect"
	"google.golang.org/protobuf/reflect/protoregistry"
	"google.golang.org/protobuf/types/descriptorpb"
	"google.golang.org/protobuf/types/dynamicpb"
)

// gRPC server reflection (grpc.reflection.v1 and v1alpha), served without
// any work at package init or at NewServer: connectrpc.com/grpcreflect
// parses its embedded descriptors in a package-level var, which every
// binary paid at exec (about a tenth of the greeter's package init) whether
// or not a client ever asked. Here the two reflection files are built from
// a small descriptor on the first reflection call, and the messages are
// dynamicpb messages of those files, so no generated code registers at
// init either. The behaviour follows grpcreflect's: each file is sent with
// its imports once per stream, lookups go to protoregistry.GlobalFiles
// (then to the reflection files themselves), extensions to
// protoregistry.GlobalTypes, and a failed lookup is a NOT_FOUND
// error_response on the stream, not a stream error.

const (
	reflectV1Service      = "grpc.reflection.v1.ServerReflection"
	reflectV1AlphaService = "grpc.reflection.v1alpha.ServerReflection"
	reflectMethod         = "ServerReflectionInfo"
)

// registerReflection registers both versions of the reflection service on
// server. Their Schema is nil (there is no descriptor until the first call),
// so interceptors that need a method descriptor treat them as schemaless.
func registerReflection(server *connect.Server) {
	r := &reflector{server: server}
	r.files = sync.OnceValues(r.buildFiles)
	for _, service := range []string{reflectV1Service, reflectV1AlphaService} {
		pkg := protoreflect.FullName(service).Parent()
		server.Register(connect.Method{
			Spec: connect.Spec{
				StreamType: connect.StreamTypeBidi,
				Procedure:  "/" + service + "/" + reflectMethod,
			},
			Handler: func(ctx context.Context, _ connect.Spec, stream connect.ServerStream) error {
				return r.serve(ctx, pkg, stream)
			},
		})
	}
}

type reflector struct {
	server *connect.Server
	// files holds what reflection describes beyond
	// protoregistry.GlobalFiles, built on first use: the two reflection
	// files and the files of registered methods' schemas that are not
	// registered globally (such as the server's grpc.health.v1 schema).
	files func() (*protoregistry.Files, error)
}

func (r *reflector) buildFiles() (*protoregistry.Files, error) {
	files, err := buildReflectionFiles()
	if err != nil {
		return nil, err
	}
	for spec := range r.server.Specs() {
		md, ok := spec.Schema.(protoreflect.MethodDescriptor)
		if !ok {
			continue
		}
		fd := md.ParentFile()
		if _, err := protoregistry.GlobalFiles.FindFileByPath(fd.Path()); err == nil {
			continue
		}
		if _, err := files.FindFileByPath(fd.Path()); err == nil {
			continue
		}
		_ = files.RegisterFile(fd) // a conflicting name stays described by the first file
	}
	return files, nil
}

// serve answers one reflection stream of the package pkg's version.
func (r *reflector) serve(_ context.Context, pkg protoreflect.FullName, stream connect.ServerStream) error {
	files, err := r.files()
	if err != nil {
		return connect.Errorf(connect.CodeInternal, "rpc: reflection descriptors: %v", err)
	}
	m, err := newReflectionMessages(files, pkg)
	if err != nil {
		return connect.Errorf(connect.CodeInternal, "%v", err)
	}
	resolver := combinedResolver{protoregistry.GlobalFiles, files}
	sent := map[string]bool{} // files already sent on this stream
	for {
		req := dynamicpb.NewMessage(m.request)
		if err := stream.Receive(req); err != nil {
			if errors.Is(err, io.EOF) {
				return nil
			}
			return err
		}
		res := dynamicpb.NewMessage(m.response)
		res.Set(m.response.Fields().ByName("valid_host"), req.Get(m.request.Fields().ByName("host")))
		res.Set(m.response.Fields().ByName("original_request"), protoreflect.ValueOfMessage(req))
		which := req.WhichOneof(m.request.Oneofs().ByName("message_request"))
		if which == nil {
			return connect.NewError(connect.CodeInvalidArgument, "invalid MessageRequest: not set")
		}
		arg := req.Get(which)
		var (
			data    [][]byte
			lookErr error
		)
		switch which.Name() {
		case "file_by_filename":
			var fd protoreflect.FileDescriptor
			if fd, lookErr = resolver.FindFileByPath(arg.String()); lookErr == nil {
				data, lookErr = fileWithImports(fd, sent)
			}
		case "file_containing_symbol":
			var d protoreflect.Descriptor
			if d, lookErr = resolver.FindDescriptorByName(protoreflect.FullName(arg.String())); lookErr == nil {
				data, lookErr = fileWithImports(d.ParentFile(), sent)
			}
		case "file_containing_extension":
			ext := arg.Message()
			fields := ext.Descriptor().Fields()
			var xt protoreflect.ExtensionType
			xt, lookErr = protoregistry.GlobalTypes.FindExtensionByNumber(
				protoreflect.FullName(ext.Get(fields.ByName("containing_type")).String()),
				protoreflect.FieldNumber(ext.Get(fields.ByName("extension_number")).Int()))
			if lookErr == nil {
				data, lookErr = fileWithImports(xt.TypeDescriptor().ParentFile(), sent)
			}
		case "all_extension_numbers_of_type":
			var nums []int32
			if nums, lookErr = extensionNumbers(resolver, protoreflect.FullName(arg.String())); lookErr == nil {
				out := dynamicpb.NewMessage(m.extensionNumbers)
				f := m.extensionNumbers.Fields()
				out.Set(f.ByName("base_type_name"), arg)
				list := out.Mutable(f.ByName("extension_number")).List()
				for _, n := range nums {
					list.Append(protoreflect.ValueOfInt32(n))
				}
				res.Set(m.response.Fields().ByName("all_extension_numbers_response"), protoreflect.ValueOfMessage(out))
			}
		case "list_services":
			out := dynamicpb.NewMessage(m.listServices)
			list := out.Mutable(m.listServices.Fields().ByName("service")).List()
			for _, name := range r.serviceNames() {
				e := list.NewElement()
				e.Message().Set(e.Message().Descriptor().Fields().ByName("name"), protoreflect.ValueOfString(name))
				list.Append(e)
			}
			res.Set(m.response.Fields().ByName("list_services_response"), protoreflect.ValueOfMessage(out))
		default:
			return connect.Errorf(connect.CodeInvalidArgument, "invalid MessageRequest: %s", which.Name())
		}
		switch {
		case lookErr != nil:
			out := dynamicpb.NewMessage(m.errorResponse)
			f := m.errorResponse.Fields()
			out.Set(f.ByName("error_code"), protoreflect.ValueOfInt32(int32(connect.CodeNotFound)))
			out.Set(f.ByName("error_message"), protoreflect.ValueOfString(lookErr.Error()))
			res.Set(m.response.Fields().ByName("error_response"), protoreflect.ValueOfMessage(out))
		case data != nil:
			out := dynamicpb.NewMessage(m.fileDescriptors)
			list := out.Mutable(m.fileDescriptors.Fields().ByName("file_descriptor_proto")).List()
			for _, b := range data {
				list.Append(protoreflect.ValueOfBytes(b))
			}
			res.Set(m.response.Fields().ByName("file_descriptor_response"), protoreflect.ValueOfMessage(out))
		}
		if err := stream.Send(res); err != nil {
			return err
		}
	}
}

// serviceNames lists, sorted, the services of the server's methods that
// have a protobuf schema (as grpcreflect does) and the two reflection
// services, whose schema is built only on the first call.
func (r *reflector) serviceNames() []string {
	seen := map[string]bool{reflectV1Service: true, reflectV1AlphaService: true}
	for spec := range r.server.Specs() {
		if md, ok := spec.Schema.(protoreflect.MethodDescriptor); ok {
			seen[string(md.Parent().FullName())] = true
		}
	}
	names := make([]string, 0, len(seen))
	for n := range seen {
		names = append(names, n)
	}
	slices.Sort(names)
	return names
}

// fileWithImports returns fd, serialised, and those of its transitive
// imports that were not sent yet; fd itself is always sent.
func fileWithImports(fd protoreflect.FileDescriptor, sent map[string]bool) ([][]byte, error) {
	if fd == nil || fd.IsPlaceholder() {
		return nil, protoregistry.NotFound
	}
	var out [][]byte
	visited := map[string]bool{}
	queue := []protoreflect.FileDescriptor{fd}
	for len(queue) > 0 {
		f := queue[0]
		queue = queue[1:]
		if f.IsPlaceholder() || visited[f.Path()] {
			continue
		}
		visited[f.Path()] = true
		if len(out) == 0 || !sent[f.Path()] {
			sent[f.Path()] = true
			b, err := proto.Marshal(protodesc.ToFileDescriptorProto(f))
			if err != nil {
				return nil, err
			}
			out = append(out, b)
		}
		imports := f.Imports()
		for i := range imports.Len() {
			queue = append(queue, imports.Get(i).FileDescriptor)
		}
	}
	return out, nil
}

// extensionNumbers returns the sorted numbers of the extensions of message
// name known to protoregistry.GlobalTypes; an unknown message is an error.
func extensionNumbers(resolver protodesc.Resolver, name protoreflect.FullName) ([]int32, error) {
	nums := []int32{}
	protoregistry.GlobalTypes.RangeExtensionsByMessage(name, func(xt protoreflect.ExtensionType) bool {
		nums = append(nums, int32(xt.TypeDescriptor().Number()))
		return true
	})
	if len(nums) == 0 {
		if _, err := resolver.FindDescriptorByName(name); err != nil {
			return nil, err
		}
	}
	slices.Sort(nums)
	return nums, nil
}

// combinedResolver looks in first, then in second when first has nothing.
type combinedResolver struct{ first, second protodesc.Resolver }

func (r combinedResolver) FindFileByPath(path string) (protoreflect.FileDescriptor, error) {
	fd, err := r.first.FindFileByPath(path)
	if errors.Is(err, protoregistry.NotFound) {
		fd, err = r.second.FindFileByPath(path)
	}
	return fd, err
}

func (r combinedResolver) FindDescriptorByName(name protoreflect.FullName) (protoreflect.Descriptor, error) {
	d, err := r.first.FindDescriptorByName(name)
	if errors.Is(err, protoregistry.NotFound) {
		d, err = r.second.FindDescriptorByName(name)
	}
	return d, err
}

// reflectionMessages are the message descriptors of one reflection version.
type reflectionMessages struct {
	request, response, fileDescriptors, extensionNumbers, listServices, errorResponse protoreflect.MessageDescriptor
}

func newReflectionMessages(files *protoregistry.Files, pkg protoreflect.FullName) (*reflectionMessages, error) {
	find := func(name string) protoreflect.MessageDescriptor {
		d, _ := files.FindDescriptorByName(pkg.Append(protoreflect.Name(name)))
		md, _ := d.(protoreflect.MessageDescriptor)
		return md
	}
	m := &reflectionMessages{
		request:          find("ServerReflectionRequest"),
		response:         find("ServerReflectionResponse"),
		fileDescriptors:  find("FileDescriptorResponse"),
		extensionNumbers: find("ExtensionNumberResponse"),
		listServices:     find("ListServiceResponse"),
		errorResponse:    find("ErrorResponse"),
	}
	for _, md := range []protoreflect.MessageDescriptor{m.request, m.response, m.fileDescriptors, m.extensionNumbers, m.listServices, m.errorResponse} {
		if md == nil {
			return nil, fmt.Errorf("rpc: reflection descriptors of %s are incomplete", pkg)
		}
	}
	return m, nil
}

// buildReflectionFiles builds grpc/reflection/v1/reflection.proto and its
// deprecated v1alpha twin (the same messages in package
// grpc.reflection.v1alpha), as published in github.com/grpc/grpc-proto,
// without comments.
func buildReflectionFiles() (*protoregistry.Files, error) {
	files := new(protoregistry.Files)
	for _, version := range []string{"v1", "v1alpha"} {
		fd, err := protodesc.NewFile(reflectionFileProto(version), files)
		if err != nil {
			return nil, err
		}
		if err := files.RegisterFile(fd); err != nil {
			return nil, err
		}
	}
	return files, nil
}

func reflectionFileProto(version string) *descriptorpb.FileDescriptorProto {
	pkg := "grpc.reflection." + version
	ref := func(msg string) *string { return proto.String("." + pkg + "." + msg) }
	const (
		optional = descriptorpb.FieldDescriptorProto_LABEL_OPTIONAL
		repeated = descriptorpb.FieldDescriptorProto_LABEL_REPEATED
		str      = descriptorpb.FieldDescriptorProto_TYPE_STRING
		i32      = descriptorpb.FieldDescriptorProto_TYPE_INT32
		byts     = descriptorpb.FieldDescriptorProto_TYPE_BYTES
		msg      = descriptorpb.FieldDescriptorProto_TYPE_MESSAGE
	)
	field := func(name string, number int32, label descriptorpb.FieldDescriptorProto_Label, typ descriptorpb.FieldDescriptorProto_Type, typeName *string, oneof *int32) *descriptorpb.FieldDescriptorProto {
		return &descriptorpb.FieldDescriptorProto{
			Name: proto.String(name), Number: proto.Int32(number), Label: label.Enum(), Type: typ.Enum(),
			TypeName: typeName, OneofIndex: oneof, JsonName: proto.String(jsonName(name)),
		}
	}
	message := func(name string, fields ...*descriptorpb.FieldDescriptorProto) *descriptorpb.DescriptorProto {
		return &descriptorpb.DescriptorProto{Name: proto.String(name), Field: fields}
	}
	zero := proto.Int32(0)
	request := message("ServerReflectionRequest",
		field("host", 1, optional, str, nil, nil),
		field("file_by_filename", 3, optional, str, nil, zero),
		field("file_containing_symbol", 4, optional, str, nil, zero),
		field("file_containing_extension", 5, optional, msg, ref("ExtensionRequest"), zero),
		field("all_extension_numbers_of_type", 6, optional, str, nil, zero),
		field("list_services", 7, optional, str, nil, zero),
	)
	request.OneofDecl = []*descriptorpb.OneofDescriptorProto{{Name: proto.String("message_request")}}
	response := message("ServerReflectionResponse",
		field("valid_host", 1, optional, str, nil, nil),
		field("original_request", 2, optional, msg, ref("ServerReflectionRequest"), nil),
		field("file_descriptor_response", 4, optional, msg, ref("FileDescriptorResponse"), zero),
		field("all_extension_numbers_response", 5, optional, msg, ref("ExtensionNumberResponse"), zero),
		field("list_services_response", 6, optional, msg, ref("ListServiceResponse"), zero),
		field("error_response", 7, optional, msg, ref("ErrorResponse"), zero),
	)
	response.OneofDecl = []*descriptorpb.OneofDescriptorProto{{Name: proto.String("message_response")}}
	fdp := &descriptorpb.FileDescriptorProto{
		Name:    proto.String("grpc/reflection/" + version + "/reflection.proto"),
		Package: proto.String(pkg),
		Syntax:  proto.String("proto3"),
		MessageType: []*descriptorpb.DescriptorProto{
			request,
			message("ExtensionRequest",
				field("containing_type", 1, optional, str, nil, nil),
				field("extension_number", 2, optional, i32, nil, nil)),
			response,
			message("FileDescriptorResponse", field("file_descriptor_proto", 1, repeated, byts, nil, nil)),
			message("ExtensionNumberResponse",
				field("base_type_name", 1, optional, str, nil, nil),
				field("extension_number", 2, repeated, i32, nil, nil)),
			message("ListServiceResponse", field("service", 1, repeated, msg, ref("ServiceResponse"), nil)),
			message("ServiceResponse", field("name", 1, optional, str, nil, nil)),
			message("ErrorResponse",
				field("error_code", 1, optional, i32, nil, nil),
				field("error_message", 2, optional, str, nil, nil)),
		},
		Service: []*descriptorpb.ServiceDescriptorProto{{
			Name: proto.String("ServerReflection"),
			Method: []*descriptorpb.MethodDescriptorProto{{
				Name:            proto.String(reflectMethod),
				InputType:       ref("ServerReflectionRequest"),
				OutputType:      ref("ServerReflectionResponse"),
				ClientStreaming: proto.Bool(true),
				ServerStreaming: proto.Bool(true),
			}},
		}},
		Options: &descriptorpb.FileOptions{
			GoPackage: proto.String("google.golang.org/grpc/reflection/grpc_reflection_" + version),
		},
	}
	if version == "v1alpha" {
		fdp.Options.Deprecated = proto.Bool(true)
	}
	return fdp
}

// jsonName is protoc's JSON name of a field: lowerCamelCase.
func jsonName(name string) string {
	var b strings.Builder
	upper := false
	for _, c := range name {
		switch {
		case c == '_':
			upper = true
		case upper && 'a' <= c && c <= 'z':
			b.WriteRune(c - 'a' + 'A')
			upper = false
		default:
			b.WriteRune(c)
			upper = false
		}
	}
	return b.String()
}
