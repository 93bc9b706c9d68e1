package sluice

import (
	"go/ast"
	"go/parser"
	"go/token"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"testing"
)

// apiPackages are the library's public packages, by directory.
var apiPackages = []string{".", "fleet", "middleware", "outbound", "otelx", "status"}

// exampleAllowlist names the exported functions that need no Example of their
// own, each with the reason. Keys are "<dir>.<Func>" or "<dir>.<Type>.<Method>".
var exampleAllowlist = map[string]string{}

// parseAPIPackage parses the Go files of one library package: its non-test
// files (the API) and its test files (the examples), package clause included.
func parseAPIPackage(t *testing.T, dir string) (api, tests []*ast.File, fset *token.FileSet) {
	t.Helper()
	fset = token.NewFileSet()
	names, err := filepath.Glob(filepath.Join(dir, "*.go"))
	if err != nil {
		t.Fatal(err)
	}
	if len(names) == 0 {
		t.Fatalf("%s: no Go files: the test would prove nothing", dir)
	}
	for _, name := range names {
		src, err := os.ReadFile(name)
		if err != nil {
			t.Fatal(err)
		}
		f, err := parser.ParseFile(fset, name, src, parser.SkipObjectResolution)
		if err != nil {
			t.Fatal(err)
		}
		if strings.HasSuffix(name, "_test.go") {
			tests = append(tests, f)
		} else {
			api = append(api, f)
		}
	}
	return api, tests, fset
}

// exportedTypes returns the names of the exported types a package declares.
func exportedTypes(files []*ast.File) map[string]bool {
	types := map[string]bool{}
	for _, f := range files {
		for _, d := range f.Decls {
			g, ok := d.(*ast.GenDecl)
			if !ok || g.Tok != token.TYPE {
				continue
			}
			for _, s := range g.Specs {
				if ts := s.(*ast.TypeSpec); ts.Name.IsExported() {
					types[ts.Name.Name] = true
				}
			}
		}
	}
	return types
}

// receiverType returns the name of a method's receiver type, without * or
// type parameters.
func receiverType(fd *ast.FuncDecl) string {
	x := fd.Recv.List[0].Type
	if s, ok := x.(*ast.StarExpr); ok {
		x = s.X
	}
	switch t := x.(type) {
	case *ast.IndexExpr:
		x = t.X
	case *ast.IndexListExpr:
		x = t.X
	}
	if id, ok := x.(*ast.Ident); ok {
		return id.Name
	}
	return ""
}

// badParams reports the parameters and results of one signature that go doc
// would print badly: a "_" name anywhere; a list without names where a
// reader needs them (always in a declared func or method, since it can name
// them; in an interface method or a func type, when two or more parameters
// share a list, as in func(string, string)).
func badParams(ft *ast.FuncType, declared bool) []string {
	var bad []string
	check := func(what string, fl *ast.FieldList, needNames bool) {
		if fl == nil {
			return
		}
		for _, f := range fl.List {
			for _, n := range f.Names {
				if n.Name == "_" {
					bad = append(bad, what+" named _")
				}
			}
		}
		if needNames && fl.NumFields() > 0 && len(fl.List[0].Names) == 0 {
			bad = append(bad, what+"s without names")
		}
	}
	params := ft.Params.NumFields()
	check("parameter", ft.Params, declared || params >= 2)
	check("result", ft.Results, false)
	return bad
}

// TestAPISignaturesReadCleanly fails when an exported function, method,
// interface method or func type of a library package has a parameter named _
// or a parameter list without names where go doc's reader needs them.
func TestAPISignaturesReadCleanly(t *testing.T) {
	for _, dir := range apiPackages {
		api, _, fset := parseAPIPackage(t, dir)
		types := exportedTypes(api)
		report := func(pos token.Pos, name string, bad []string) {
			for _, b := range bad {
				t.Errorf("%s: %s: %s (go doc shows it to every user; name it)", fset.Position(pos), name, b)
			}
		}
		for _, f := range api {
			for _, d := range f.Decls {
				switch d := d.(type) {
				case *ast.FuncDecl:
					if !d.Name.IsExported() {
						continue
					}
					name := d.Name.Name
					if d.Recv != nil {
						rt := receiverType(d)
						if !types[rt] {
							continue // a method of an unexported type is not in go doc
						}
						name = rt + "." + name
					}
					report(d.Pos(), name, badParams(d.Type, true))
				case *ast.GenDecl:
					if d.Tok != token.TYPE {
						continue
					}
					for _, s := range d.Specs {
						ts := s.(*ast.TypeSpec)
						if !ts.Name.IsExported() {
							continue
						}
						ast.Inspect(ts.Type, func(n ast.Node) bool {
							switch n := n.(type) {
							case *ast.Field:
								if len(n.Names) > 0 && !n.Names[0].IsExported() {
									return false // an unexported field or method is not in go doc
								}
							case *ast.FuncType:
								report(n.Pos(), ts.Name.Name, badParams(n, false))
							}
							return true
						})
					}
				}
			}
		}
	}
}

// TestEveryExportedFuncHasExample fails when an exported function of a
// library package has no runnable Example (Example<Func>, or Example<Func>_
// with a lower-case suffix), or when an exported type with exported methods
// has none: Example<Type>, Example<Type>_<Method>, or an example of a
// function that returns the type (its constructor, listed under it by go
// doc). exampleAllowlist holds the exceptions, each with a reason.
func TestEveryExportedFuncHasExample(t *testing.T) {
	for _, dir := range apiPackages {
		api, tests, _ := parseAPIPackage(t, dir)
		types := exportedTypes(api)
		examples := map[string]bool{}
		for _, f := range tests {
			for _, d := range f.Decls {
				fd, ok := d.(*ast.FuncDecl)
				if !ok || fd.Recv != nil || !strings.HasPrefix(fd.Name.Name, "Example") {
					continue
				}
				name := strings.TrimPrefix(fd.Name.Name, "Example")
				// A lower-case suffix after _ names a variant of the same example.
				if i := strings.LastIndex(name, "_"); i >= 0 && i+1 < len(name) && isLower(name[i+1]) {
					name = name[:i]
				}
				examples[name] = true
				if i := strings.Index(name, "_"); i >= 0 {
					examples[name[:i]] = true // ExampleT_M shows the type T too
				}
			}
		}
		need := map[string]bool{}        // the functions, and the types with methods, needing an example
		returns := map[string][]string{} // type -> the functions returning it
		for _, f := range api {
			for _, d := range f.Decls {
				fd, ok := d.(*ast.FuncDecl)
				if !ok || !fd.Name.IsExported() {
					continue
				}
				if fd.Recv != nil {
					if rt := receiverType(fd); types[rt] {
						need[rt] = true
					}
					continue
				}
				need[fd.Name.Name] = true
				if fd.Type.Results != nil {
					for _, r := range fd.Type.Results.List {
						x := r.Type
						if s, ok := x.(*ast.StarExpr); ok {
							x = s.X
						}
						if id, ok := x.(*ast.Ident); ok && types[id.Name] {
							returns[id.Name] = append(returns[id.Name], fd.Name.Name)
						}
					}
				}
			}
		}
		var missing []string
		for name := range need {
			covered := examples[name]
			for _, fn := range returns[name] {
				covered = covered || examples[fn]
			}
			key := dir + "." + name
			if _, ok := exampleAllowlist[key]; ok {
				if covered {
					t.Errorf("%s has an example now: drop it from exampleAllowlist", key)
				}
				continue
			}
			if !covered {
				missing = append(missing, name)
			}
		}
		sort.Strings(missing)
		for _, m := range missing {
			t.Errorf("%s: %s has no runnable Example (add Example%s to %s/example_test.go, or allowlist it with a reason)",
				dir, m, m, dir)
		}
	}
}

func isLower(b byte) bool { return 'a' <= b && b <= 'z' }
