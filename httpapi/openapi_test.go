package httpapi

import (
	"os"
	"regexp"
	"slices"
	"strings"
	"testing"
)

// TestOpenAPIDescribesEveryRoute is a small hand check of
// docs/openapi.yaml, with no YAML library: the file is indented with
// spaces only, declares OpenAPI 3.1, lists exactly the server's routes
// under paths (path keys at indent 2, methods at indent 4), and every
// $ref names a component that exists. It does not validate the document
// against the OpenAPI schema.
func TestOpenAPIDescribesEveryRoute(t *testing.T) {
	data, err := os.ReadFile("../docs/openapi.yaml")
	if err != nil {
		t.Fatal(err)
	}
	lines := strings.Split(string(data), "\n")
	if !strings.HasPrefix(lines[0], "openapi: 3.1.") {
		t.Fatalf("first line %q: want openapi: 3.1.x", lines[0])
	}
	var (
		got        []string
		section    string // the top-level key we are in
		path       string
		components = map[string]bool{} // "schemas/Job"
		kind       string
	)
	for i, line := range lines {
		if strings.Contains(line, "\t") {
			t.Fatalf("line %d: tab", i+1)
		}
		trimmed := strings.TrimLeft(line, " ")
		if trimmed == "" || strings.HasPrefix(trimmed, "#") {
			continue
		}
		indent := len(line) - len(trimmed)
		if indent%2 != 0 {
			t.Fatalf("line %d: odd indentation", i+1)
		}
		key, _, isKey := strings.Cut(trimmed, ":")
		if indent == 0 {
			section = key
			continue
		}
		switch {
		case section == "paths" && indent == 2 && isKey:
			path = key
		case section == "paths" && indent == 4 && isKey:
			got = append(got, strings.ToUpper(key)+" "+path)
		case section == "components" && indent == 2 && isKey:
			kind = key
		case section == "components" && indent == 4 && isKey:
			components[kind+"/"+key] = true
		}
	}
	var want []string
	for _, rt := range routes {
		want = append(want, rt.pattern)
	}
	slices.Sort(got)
	slices.Sort(want)
	if !slices.Equal(got, want) {
		t.Fatalf("openapi.yaml describes\n%v\nthe server routes\n%v", got, want)
	}
	refs := regexp.MustCompile(`\$ref: '#/components/(\w+/\w+)'`).FindAllStringSubmatch(string(data), -1)
	if len(refs) == 0 {
		t.Fatal("no $ref found")
	}
	for _, m := range refs {
		if !components[m[1]] {
			t.Errorf("$ref to missing component %s", m[1])
		}
	}
}
