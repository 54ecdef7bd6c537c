package codegen

import "google.golang.org/protobuf/compiler/protogen"

// The package-level identifiers generated for a service and a TCC Try
// method. generateService and checkNames both use these, so that the check
// sees exactly what is generated.
func discoveryConstName(s *protogen.Service) string { return s.GoName + "DiscoveryName" }
func policyFuncName(s *protogen.Service) string     { return s.GoName + "Policy" }
func registerFuncName(s *protogen.Service) string   { return "Register" + s.GoName }
func clientFuncName(s *protogen.Service) string     { return "New" + s.GoName + "Client" }
func branchFuncName(m *protogen.Method) string      { return m.Parent.GoName + m.GoName + "Branch" }

// declaration is where a generated identifier comes from.
type declaration struct {
	file    *protogen.File
	service *protogen.Service
	method  *protogen.Method // the TCC Try method of a branch constructor
}

func (d declaration) String() string {
	s := "service " + string(d.service.Desc.FullName())
	if d.method != nil {
		s += ", method " + string(d.method.Desc.Name())
	}
	return s + " in " + d.file.Desc.Path()
}

// checkNames reports identifiers that generated code would declare twice in
// one Go package, so that the user learns which services to rename instead
// of getting a Go compile error. Names can meet across services (service
// ThingPolicy's RegisterThingPolicy is service RegisterThing's policy
// function) and across .proto files that share a Go package.
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
				here := declaration{file: fw.file, service: service, method: id.method}
				prev, ok := names[id.name]
				if !ok {
					names[id.name] = here
					continue
				}
				e := &methodErrors{file: fw.file, service: service}
				e.add(id.method, "generated Go name %s is also generated for %s; rename one of them", id.name, prev)
				errs = append(errs, e.errs...)
			}
		}
	}
	return errs
}
