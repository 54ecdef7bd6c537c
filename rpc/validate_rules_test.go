package rpc

import (
	"testing"

	"buf.build/gen/go/bufbuild/protovalidate/protocolbuffers/go/buf/validate"
	"buf.build/go/protovalidate"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/reflect/protodesc"
	"google.golang.org/protobuf/reflect/protoreflect"
	"google.golang.org/protobuf/reflect/protoregistry"
	"google.golang.org/protobuf/types/descriptorpb"
	"google.golang.org/protobuf/types/dynamicpb"

	greeterv1 "github.com/concordrpc/concord/examples/greeter/gen/greeter/v1"
)

// rulesFile builds test messages with and without protovalidate rules, in
// each place a rule can hide: on a field, on a message, on a oneof, on a
// nested message's field, on a map value's field.
func rulesFile(t *testing.T) protoreflect.FileDescriptor {
	t.Helper()
	str := descriptorpb.FieldDescriptorProto_TYPE_STRING.Enum()
	msg := descriptorpb.FieldDescriptorProto_TYPE_MESSAGE.Enum()
	opt := descriptorpb.FieldDescriptorProto_LABEL_OPTIONAL.Enum()
	rep := descriptorpb.FieldDescriptorProto_LABEL_REPEATED.Enum()
	field := func(name string, n int32, typ *descriptorpb.FieldDescriptorProto_Type, typeName string) *descriptorpb.FieldDescriptorProto {
		f := &descriptorpb.FieldDescriptorProto{Name: proto.String(name), Number: proto.Int32(n), Type: typ, Label: opt, JsonName: proto.String(name)}
		if typeName != "" {
			f.TypeName = proto.String(".test.rules." + typeName)
		}
		return f
	}
	mapOf := func(name, entry, value string) (*descriptorpb.FieldDescriptorProto, *descriptorpb.DescriptorProto) {
		f := field(name, 1, msg, entry)
		f.Label = rep
		return f, &descriptorpb.DescriptorProto{
			Name:    proto.String(entry[len(entry)-len("MEntry"):]),
			Options: &descriptorpb.MessageOptions{MapEntry: proto.Bool(true)},
			Field:   []*descriptorpb.FieldDescriptorProto{field("key", 1, str, ""), field("value", 2, msg, value)},
		}
	}
	minLen := &descriptorpb.FieldOptions{}
	proto.SetExtension(minLen, validate.E_Field, &validate.FieldRules{Type: &validate.FieldRules_String_{String_: &validate.StringRules{MinLen: proto.Uint64(1)}}})
	leafS := field("s", 1, str, "")
	leafS.Options = minLen
	msgRule := &descriptorpb.MessageOptions{}
	proto.SetExtension(msgRule, validate.E_Message, &validate.MessageRules{Cel: []*validate.Rule{{Id: proto.String("a"), Message: proto.String("a is empty"), Expression: proto.String("this.a != ''")}}})
	oneofRule := &descriptorpb.OneofOptions{}
	proto.SetExtension(oneofRule, validate.E_Oneof, &validate.OneofRules{Required: proto.Bool(true)})
	inOneof := field("a", 1, str, "")
	inOneof.OneofIndex = proto.Int32(0)

	plainMap, plainEntry := mapOf("m", "Plain.MEntry", "Plain")
	plainMap.Number = proto.Int32(3)
	leafMap, leafEntry := mapOf("m", "InMap.MEntry", "Leaf")
	fdp := &descriptorpb.FileDescriptorProto{
		Name:       proto.String("test/rules.proto"),
		Package:    proto.String("test.rules"),
		Syntax:     proto.String("proto3"),
		Dependency: []string{"buf/validate/validate.proto"},
		MessageType: []*descriptorpb.DescriptorProto{
			{Name: proto.String("Plain"), Field: []*descriptorpb.FieldDescriptorProto{field("s", 1, str, ""), field("self", 2, msg, "Plain"), plainMap}, NestedType: []*descriptorpb.DescriptorProto{plainEntry}},
			{Name: proto.String("Leaf"), Field: []*descriptorpb.FieldDescriptorProto{leafS}},
			{Name: proto.String("Nested"), Field: []*descriptorpb.FieldDescriptorProto{field("leaf", 1, msg, "Leaf")}},
			{Name: proto.String("InMap"), Field: []*descriptorpb.FieldDescriptorProto{leafMap}, NestedType: []*descriptorpb.DescriptorProto{leafEntry}},
			{Name: proto.String("MsgRule"), Field: []*descriptorpb.FieldDescriptorProto{field("a", 1, str, "")}, Options: msgRule},
			{Name: proto.String("OneofRule"), Field: []*descriptorpb.FieldDescriptorProto{inOneof}, OneofDecl: []*descriptorpb.OneofDescriptorProto{{Name: proto.String("o"), Options: oneofRule}}},
		},
	}
	fd, err := protodesc.NewFile(fdp, protoregistry.GlobalFiles)
	if err != nil {
		t.Fatal(err)
	}
	return fd
}

// TestHasRules checks which request types the validation interceptor may
// skip, and for each type said to have rules, that protovalidate does fail
// an instance that breaks them: a type whose rules hasRules missed would let
// invalid requests through.
func TestHasRules(t *testing.T) {
	fd := rulesFile(t)
	v, err := protovalidate.New()
	if err != nil {
		t.Fatal(err)
	}
	byName := func(name string) protoreflect.MessageDescriptor { return fd.Messages().ByName(protoreflect.Name(name)) }
	emptyLeaf := func() protoreflect.Value { return protoreflect.ValueOfMessage(dynamicpb.NewMessage(byName("Leaf"))) }
	for _, tc := range []struct {
		name string
		md   protoreflect.MessageDescriptor
		want bool
		// invalid, for a type with rules, makes an instance that breaks them.
		invalid func(m *dynamicpb.Message)
	}{
		{name: "no rules, recursive, map", md: byName("Plain")},
		{name: "greeter response", md: (&greeterv1.GreetResponse{}).ProtoReflect().Descriptor()},
		{name: "field rule", md: byName("Leaf"), want: true, invalid: func(*dynamicpb.Message) {}},
		{name: "greeter request", md: (&greeterv1.GreetRequest{}).ProtoReflect().Descriptor(), want: true, invalid: func(*dynamicpb.Message) {}},
		{name: "nested field rule", md: byName("Nested"), want: true, invalid: func(m *dynamicpb.Message) {
			m.Set(m.Descriptor().Fields().ByName("leaf"), emptyLeaf())
		}},
		{name: "map value field rule", md: byName("InMap"), want: true, invalid: func(m *dynamicpb.Message) {
			m.Mutable(m.Descriptor().Fields().ByName("m")).Map().Set(protoreflect.ValueOfString("k").MapKey(), emptyLeaf())
		}},
		{name: "message rule", md: byName("MsgRule"), want: true, invalid: func(*dynamicpb.Message) {}},
		{name: "oneof rule", md: byName("OneofRule"), want: true, invalid: func(*dynamicpb.Message) {}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var c ruleCache
			for range 2 { // computed, then cached
				if got := c.has(tc.md); got != tc.want {
					t.Fatalf("has rules: %v, want %v", got, tc.want)
				}
			}
			m := dynamicpb.NewMessage(tc.md)
			if tc.invalid == nil {
				if err := v.Validate(m); err != nil {
					t.Fatalf("protovalidate fails the empty message of a type without rules: %v", err)
				}
				return
			}
			tc.invalid(m)
			if err := v.Validate(m); err == nil {
				t.Fatal("protovalidate accepts the instance that should break the rules: the test is wrong")
			}
		})
	}
}
