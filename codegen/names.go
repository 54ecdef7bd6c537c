package codegen

import "google.golang.org/protobuf/compiler/protogen"

// The package-level identifiers generated for a service, a TCC Try method
// and an event. generateService, generateEvent and checkNames all use
// these, so that the check sees exactly what is generated.
func discoveryConstName(s *protogen.Service) string { return s.GoName + "DiscoveryName" }
func policyFuncName(s *protogen.Service) string     { return s.GoName + "Policy" }
func registerFuncName(s *protogen.Service) string   { return "Register" + s.GoName }
func clientFuncName(s *protogen.Service) string     { return "New" + s.GoName + "Client" }
func branchFuncName(m *protogen.Method) string      { return m.Parent.GoName + m.GoName + "Branch" }
func topicConstName(m *protogen.Message) string     { return m.GoIdent.GoName + "Topic" }
func publishFuncName(m *protogen.Message) string    { return "Publish" + m.GoIdent.GoName }
func subscribeFuncName(m *protogen.Message) string  { return "Subscribe" + m.GoIdent.GoName }

// declaration is where a generated identifier comes from.
type declaration struct {
	file    *protogen.File
	service *protogen.Service
	method  *protogen.Method  // the TCC Try method of a branch constructor
	message *protogen.Message // the event of a topic, publish or subscribe helper
}

func (d declaration) String() string {
	if d.message != nil {
		return "message " + string(d.message.Desc.FullName()) + " in " + d.file.Desc.Path()
	}
	s := "service " + string(d.service.Desc.FullName())
	if d.method != nil {
		s += ", method " + string(d.method.Desc.Name())
	}
	return s + " in " + d.file.Desc.Path()
}

// checkNames reports identifiers that generated code would declare twice in
// one Go package, so that the user learns which services or events to
// rename instead of getting a Go compile error. Names can meet across
// services (service ThingPolicy's RegisterThingPolicy is service
// RegisterThing's policy function), between services and events, and
// across .proto files that share a Go package.
func checkNames(work []fileWork) []error {
	declared := map[protogen.GoImportPath]map[string]declaration{}
	var errs []error
	for _, fw := range work {
		_, pkg := concordPackage(fw.file)
		names := declared[pkg]
		if names == nil {
			names = map[string]declaration{}
			declared[pkg] = names
		}
		// declare records name and reports whether it was free.
		declare := func(name string, here declaration) (declaration, bool) {
			prev, ok := names[name]
			if !ok {
				names[name] = here
			}
			return prev, !ok
		}
		for i, service := range fw.file.Services {
			type generated struct {
				name   string
				method *protogen.Method
			}
			idents := []generated{
				{name: discoveryConstName(service)},
				{name: policyFuncName(service)},
				{name: registerFuncName(service)},
				{name: clientFuncName(service)},
			}
			if sp := fw.policies[i]; sp != nil {
				for _, mp := range sp.methods {
					if mp.tcc != nil {
						idents = append(idents, generated{branchFuncName(mp.method), mp.method})
					}
				}
			}
			for _, id := range idents {
				prev, free := declare(id.name, declaration{file: fw.file, service: service, method: id.method})
				if free {
					continue
				}
				e := &methodErrors{file: fw.file, service: service}
				e.add(id.method, "generated Go name %s is also generated for %s; rename one of them", id.name, prev)
				errs = append(errs, e.errs...)
			}
		}
		for _, ep := range fw.events {
			m := ep.message
			for _, name := range []string{topicConstName(m), publishFuncName(m), subscribeFuncName(m)} {
				prev, free := declare(name, declaration{file: fw.file, message: m})
				if free {
					continue
				}
				e := &messageErrors{file: fw.file}
				e.add(m, "generated Go name %s is also generated for %s; rename one of them", name, prev)
				errs = append(errs, e.errs...)
			}
		}
	}
	return errs
}
