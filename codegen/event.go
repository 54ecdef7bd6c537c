package codegen

import (
	"errors"
	"fmt"
	"strconv"
	"strings"

	"google.golang.org/protobuf/compiler/protogen"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/reflect/protoreflect"

	concordv1 "github.com/concordrpc/concord/proto/concord/v1"
)

const (
	msgPackage   = protogen.GoImportPath("github.com/concordrpc/concord/msg")
	coordPackage = protogen.GoImportPath("github.com/concordrpc/concord/coord")
	fmtPackage   = protogen.GoImportPath("fmt")
	strconvPkg   = protogen.GoImportPath("strconv")

	// maxTopicLen is msg.MaxTopicLen: the rules of checkTopic are those of
	// msg.CheckTopic, which a test compares.
	maxTopicLen = 128
)

// eventPolicy is a message's resolved (concord.v1.event) option.
type eventPolicy struct {
	message *protogen.Message
	topic   string
	key     *protogen.Field // nil: no ordering key
}

// messageErrors collects problems with a message's options; each names the
// file and the message.
type messageErrors struct {
	file *protogen.File
	errs []error
}

func (e *messageErrors) add(m *protogen.Message, format string, args ...any) {
	e.errs = append(e.errs, fmt.Errorf("%s: message %s: %s", e.file.Desc.Path(), m.Desc.FullName(), fmt.Sprintf(format, args...)))
}

// resolveEvents reads and checks the (concord.v1.event) options of the
// messages of file, nested ones included, in declaration order.
func resolveEvents(file *protogen.File) ([]*eventPolicy, error) {
	errs := &messageErrors{file: file}
	var events []*eventPolicy
	var walk func(ms []*protogen.Message)
	walk = func(ms []*protogen.Message) {
		for _, m := range ms {
			if ev, _ := proto.GetExtension(m.Desc.Options(), concordv1.E_Event).(*concordv1.EventOptions); ev != nil {
				events = append(events, resolveEvent(errs, m, ev))
			}
			walk(m.Messages)
		}
	}
	walk(file.Messages)
	if len(errs.errs) > 0 {
		return nil, errors.Join(errs.errs...)
	}
	return events, nil
}

func resolveEvent(errs *messageErrors, m *protogen.Message, o *concordv1.EventOptions) *eventPolicy {
	ep := &eventPolicy{message: m, topic: o.Topic}
	if err := checkTopic(o.Topic); err != nil {
		errs.add(m, "(concord.v1.event).topic %s", err)
	}
	if o.Key == "" {
		return ep
	}
	for _, f := range m.Fields {
		if string(f.Desc.Name()) == o.Key {
			ep.key = f
		}
	}
	switch f := ep.key; {
	case f == nil:
		errs.add(m, "(concord.v1.event).key names %q, which is not a field of %s", o.Key, m.Desc.Name())
	case f.Desc.IsList() || f.Desc.IsMap():
		errs.add(m, "(concord.v1.event).key field %s is %s; it must be a singular string or integer field", o.Key, cardinality(f))
	case keyFormat(f) == "":
		errs.add(m, "(concord.v1.event).key field %s is of type %s; it must be a string or integer field", o.Key, kindName(f))
	}
	return ep
}

// checkTopic applies msg.CheckTopic's rules; its error completes a
// sentence that starts with the option's name.
func checkTopic(topic string) error {
	switch {
	case topic == "":
		return errors.New("is required")
	case len(topic) > maxTopicLen:
		return fmt.Errorf("is %d bytes long; at most %d", len(topic), maxTopicLen)
	}
	for tok := range strings.SplitSeq(topic, ".") {
		if tok == "" {
			return fmt.Errorf("%q has an empty token: use dot-separated tokens such as \"orders.placed\"", topic)
		}
		for i := 0; i < len(tok); i++ {
			if c := tok[i]; !(c >= 'a' && c <= 'z' || c >= '0' && c <= '9' || c == '_' || c == '-') {
				return fmt.Errorf("%q holds %q: use lowercase letters, digits, '_' and '-' in dot-separated tokens", topic, c)
			}
		}
	}
	return nil
}

func cardinality(f *protogen.Field) string {
	if f.Desc.IsMap() {
		return "a map"
	}
	return "repeated"
}

func kindName(f *protogen.Field) string {
	switch f.Desc.Kind() {
	case protoreflect.MessageKind, protoreflect.GroupKind:
		return "message " + string(f.Desc.Message().FullName())
	case protoreflect.EnumKind:
		return "enum " + string(f.Desc.Enum().FullName())
	}
	return f.Desc.Kind().String()
}

// keyFormat returns how the key field's value becomes the key: "string"
// as it is, "FormatInt" or "FormatUint" through strconv; or "" for a
// field that cannot be a key.
func keyFormat(f *protogen.Field) string {
	switch f.Desc.Kind() {
	case protoreflect.StringKind:
		return "string"
	case protoreflect.Int32Kind, protoreflect.Sint32Kind, protoreflect.Sfixed32Kind,
		protoreflect.Int64Kind, protoreflect.Sint64Kind, protoreflect.Sfixed64Kind:
		return "FormatInt"
	case protoreflect.Uint32Kind, protoreflect.Fixed32Kind, protoreflect.Uint64Kind, protoreflect.Fixed64Kind:
		return "FormatUint"
	}
	return ""
}

// keyExpr returns the Go expression of ev's ordering key.
func keyExpr(g *protogen.GeneratedFile, f *protogen.Field) string {
	get := "ev.Get" + f.GoName + "()"
	switch keyFormat(f) {
	case "FormatInt":
		return g.QualifiedGoIdent(strconvPkg.Ident("FormatInt")) + "(int64(" + get + "), 10)"
	case "FormatUint":
		return g.QualifiedGoIdent(strconvPkg.Ident("FormatUint")) + "(uint64(" + get + "), 10)"
	}
	return get
}

func generateEvent(g *protogen.GeneratedFile, ep *eventPolicy) {
	m := ep.message
	full := string(m.Desc.FullName())
	topic, publish, subscribe := topicConstName(m), publishFuncName(m), subscribeFuncName(m)
	outbox := msgPackage.Ident("Outbox")
	store := msgPackage.Ident("Store")
	delivery := msgPackage.Ident("Delivery")
	ctx := contextPackage.Ident("Context")

	g.P("// ", topic, " is the topic of ", full, " events.")
	g.P("const ", topic, " = ", strconv.Quote(ep.topic))
	g.P()

	key, keyDoc := "", "none"
	if ep.key != nil {
		key, keyDoc = ", Key: "+keyExpr(g, ep.key), "field "+string(ep.key.Desc.Name())
	}
	g.P("// ", publish, " writes ev to outbox o in tx, the local")
	g.P("// transaction that holds the change ev announces, and returns the")
	g.P("// message's ID (see msg.Outbox.Add). Topic: ", topic, "; ordering key:")
	g.P("// ", keyDoc, ". The payload is ev's deterministic protobuf encoding. The")
	g.P("// error is proto.Marshal's or Add's.")
	g.P("func ", publish, "[Tx any](ctx ", ctx, ", o *", outbox, "[Tx], tx Tx, ev *", m.GoIdent, ") (string, error) {")
	g.P("b, err := ", protoPackage.Ident("MarshalOptions"), "{Deterministic: true}.Marshal(ev)")
	g.P("if err != nil {")
	g.P(`return "", err`)
	g.P("}")
	g.P("return o.Add(ctx, tx, ", msgPackage.Ident("Message"), "{Topic: ", topic, key, ", Payload: b})")
	g.P("}")
	g.P()

	g.P("// ", subscribe, " runs h for each ", full)
	g.P("// event under the consumer name consumer, in a transaction of store that")
	g.P("// commits h's writes with the consumer's inbox row (see msg.Subscribe).")
	g.P("// A payload that does not decode goes to the dead letters without")
	g.P("// reaching h (msg.ErrPermanent). It returns msg.Subscribe's errors, and")
	g.P("// msg.ErrInvalid for a nil h.")
	g.P("func ", subscribe, "[Tx any](ctx ", ctx, ", node *", coordPackage.Ident("Node"), ", store ", store, "[Tx], consumer string,")
	g.P("h func(ctx ", ctx, ", tx Tx, ev *", m.GoIdent, ", d *", delivery, ") error, opts ...", msgPackage.Ident("Option"), ") (*", msgPackage.Ident("Subscription"), ", error) {")
	g.P("if h == nil {")
	g.P("return nil, ", fmtPackage.Ident("Errorf"), `("%w: nil handler", `, msgPackage.Ident("ErrInvalid"), ")")
	g.P("}")
	g.P("return ", msgPackage.Ident("Subscribe"), "(ctx, node, store, consumer, ", topic, ", func(ctx ", ctx, ", tx Tx, d *", delivery, ") error {")
	g.P("ev := new(", m.GoIdent, ")")
	g.P("if err := ", protoPackage.Ident("Unmarshal"), "(d.Payload, ev); err != nil {")
	g.P("return ", msgPackage.Ident("Permanent"), "(", fmtPackage.Ident("Errorf"), `("decode `, full, `: %w", err))`)
	g.P("}")
	g.P("return h(ctx, tx, ev, d)")
	g.P("}, opts...)")
	g.P("}")
	g.P()
}
