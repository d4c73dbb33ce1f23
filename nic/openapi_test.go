package nic_test

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"os"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"

	"github.com/getkin/kin-openapi/openapi3"
	"github.com/google/go-cmp/cmp"

	"github.com/standbynic/standbynic/nic"
)

// seenStatus collects, over the whole test binary, the status of every
// response a control route gave: TestMain checks that the OpenAPI
// document declares each one.
var seenStatus struct {
	sync.Mutex
	m map[string]map[int]string // "METHOD pattern" → status → first test path seen
}

func TestMain(m *testing.M) {
	seenStatus.m = map[string]map[int]string{}
	nic.SetTestOnResponse(func(pattern, method string, status int) {
		if method == http.MethodHead {
			method = http.MethodGet
		}
		seenStatus.Lock()
		defer seenStatus.Unlock()
		k := method + " " + pattern
		if seenStatus.m[k] == nil {
			seenStatus.m[k] = map[int]string{}
		}
		seenStatus.m[k][status] = k
	})
	code := m.Run()
	if code == 0 {
		if err := checkSeenStatuses(); err != nil {
			fmt.Fprintln(os.Stderr, "FAIL: OpenAPI document vs the statuses the tests met:", err)
			code = 1
		}
	}
	os.Exit(code)
}

// loadOpenAPI loads and validates the embedded document.
func loadOpenAPI() (*openapi3.T, error) {
	doc, err := openapi3.NewLoader().LoadFromData(nic.OpenAPI())
	if err != nil {
		return nil, fmt.Errorf("load openapi.json: %w", err)
	}
	if err := doc.Validate(context.Background()); err != nil {
		return nil, fmt.Errorf("validate openapi.json: %w", err)
	}
	return doc, nil
}

// declared returns "METHOD path" → the statuses the document declares.
func declared(doc *openapi3.T) map[string][]int {
	out := map[string][]int{}
	for path, item := range doc.Paths.Map() {
		for method, op := range item.Operations() {
			var codes []int
			for c := range op.Responses.Map() {
				n, err := strconv.Atoi(c)
				if err != nil {
					n = -1 // "default" or a range: not allowed here
				}
				codes = append(codes, n)
			}
			slices.Sort(codes)
			out[method+" "+path] = codes
		}
	}
	return out
}

func checkSeenStatuses() error {
	doc, err := loadOpenAPI()
	if err != nil {
		return err
	}
	decl := declared(doc)
	seenStatus.Lock()
	defer seenStatus.Unlock()
	var bad []string
	for k, st := range seenStatus.m {
		codes, ok := decl[k]
		for s := range st {
			if s == http.StatusMethodNotAllowed && !ok {
				continue // a method the route does not take
			}
			if !slices.Contains(codes, s) {
				bad = append(bad, fmt.Sprintf("%s answered %d, not declared (declared %v)", k, s, codes))
			}
		}
	}
	slices.Sort(bad)
	if len(bad) > 0 {
		return fmt.Errorf("\n\t%s", strings.Join(bad, "\n\t"))
	}
	return nil
}

// TestOpenAPIRoutes: the document is valid OpenAPI 3.1 and has exactly
// the server's routes and methods; every operation declares its errors
// with the shared Error body and no "default".
func TestOpenAPIRoutes(t *testing.T) {
	doc, err := loadOpenAPI()
	if err != nil {
		t.Fatal(err)
	}
	if doc.OpenAPI != "3.1.0" {
		t.Errorf("openapi %q, want 3.1.0", doc.OpenAPI)
	}
	c := newCtl(t, 2, nil)
	want := nic.ControlRoutes(c.api)
	got := map[string][]string{}
	for path, item := range doc.Paths.Map() {
		for method := range item.Operations() {
			got[path] = append(got[path], method)
		}
		slices.Sort(got[path])
	}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("OpenAPI paths vs the route table (-routes +document):\n%s", diff)
	}
	for k, codes := range declared(doc) {
		if slices.Contains(codes, -1) {
			t.Errorf("%s declares a non-numeric response (default or a range): list the statuses", k)
		}
		for _, want := range []int{500, 503} {
			if !slices.Contains(codes, want) {
				t.Errorf("%s does not declare %d", k, want)
			}
		}
		if !slices.ContainsFunc(codes, func(c int) bool { return c >= 200 && c < 300 }) {
			t.Errorf("%s declares no success status", k)
		}
	}
	// The access of each operation (x-access) is the route's.
	for path, item := range doc.Paths.Map() {
		for method, op := range item.Operations() {
			a, _ := op.Extensions["x-access"].(string)
			if !slices.Contains([]string{"any", "control", "owner"}, a) {
				t.Errorf("%s %s: x-access %q, want any, control or owner", method, path, a)
			}
			if a != "any" && !slices.Contains(declared(doc)[method+" "+path], 403) {
				t.Errorf("%s %s: access %s but no 403 declared", method, path, a)
			}
		}
	}
}

// TestOpenAPIServed: GET /v1/openapi.json serves the embedded document,
// and the bodies of real responses validate against its schemas.
func TestOpenAPIServed(t *testing.T) {
	doc, err := loadOpenAPI()
	if err != nil {
		t.Fatal(err)
	}
	c := newCtl(t, 4, nil)
	status, _, body, hdr := c.raw("GET", "/v1/openapi.json", "")
	if status != 200 || hdr.Get("Content-Type") != "application/json" || string(body) != string(nic.OpenAPI()) {
		t.Fatalf("GET /v1/openapi.json: %d %q, %d bytes; want 200 application/json, the embedded document", status, hdr.Get("Content-Type"), len(body))
	}
	cl := c.as(&rootCred)
	cx := ctx(t)
	if _, err := cl.Arm(cx, slotConfig(40001)); err != nil {
		t.Fatal(err)
	}
	if _, err := cl.RenewLease(cx, "host", 0); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		method, path, body string
		status             int
	}{
		{"GET", "/v1/capabilities", "", 200},
		{"GET", "/v1/whoami", "", 200},
		{"GET", "/v1/power", "", 200},
		{"GET", "/v1/slots", "", 200},
		{"GET", "/v1/slots/1", "", 200},
		{"GET", "/v1/slots/9", "", 404},
		{"POST", "/v1/slots", `{"bogus":1}`, 400},
		{"GET", "/v1/wakes", "", 200},
		{"GET", "/v1/patterns", "", 200},
		{"GET", "/v1/coalescing", "", 200},
		{"POST", "/v1/coalescing", `{"local":"198.18.0.2:41000","remote":"198.18.0.1:80"}`, 201},
		{"GET", "/v1/leases", "", 200},
		{"GET", "/v1/leases/host", "", 200},
		{"PUT", "/v1/lease", `{"owner":"host"}`, 200},
		{"PUT", "/v1/power", `{"state":"D7"}`, 422},
		{"DELETE", "/v1/slots/1", "", 200},
		{"DELETE", "/v1/leases/host", "", 200},
	} {
		t.Run(tc.method+tc.path, func(t *testing.T) {
			status, _, body, _ := c.raw(tc.method, tc.path, tc.body)
			if status != tc.status {
				t.Fatalf("status %d, want %d: %s", status, tc.status, body)
			}
			route, _, err := findRoute(doc, tc.path)
			if err != nil {
				t.Fatal(err)
			}
			op := route.GetOperation(tc.method)
			resp := op.Responses.Status(status)
			if resp == nil || resp.Value.Content.Get("application/json") == nil {
				t.Fatalf("%d not declared with a JSON body", status)
			}
			var v any
			if err := json.Unmarshal(body, &v); err != nil {
				t.Fatal(err)
			}
			schema := resp.Value.Content.Get("application/json").Schema.Value
			if err := schema.VisitJSON(v, openapi3.EnableJSONSchema2020()); err != nil {
				t.Errorf("body does not match the schema: %v\n%s", err, body)
			}
		})
	}
}

// findRoute finds the path item of a concrete path ("/v1/slots/1").
func findRoute(doc *openapi3.T, path string) (*openapi3.PathItem, string, error) {
	for tmpl, item := range doc.Paths.Map() {
		ts, ps := strings.Split(tmpl, "/"), strings.Split(path, "/")
		if len(ts) != len(ps) {
			continue
		}
		ok := true
		for i := range ts {
			if ts[i] != ps[i] && !strings.HasPrefix(ts[i], "{") {
				ok = false
			}
		}
		if ok {
			return item, tmpl, nil
		}
	}
	return nil, "", fmt.Errorf("no path of the document matches %s", path)
}

// TestOpenAPIAccess: the right an operation declares (x-access) is the
// one the server enforces: a caller outside the control group is refused
// (403) by every "control" operation and by no "any" one; an "owner"
// operation refuses it or finds nothing for it (404).
func TestOpenAPIAccess(t *testing.T) {
	doc, err := loadOpenAPI()
	if err != nil {
		t.Fatal(err)
	}
	c := newCtl(t, 2, nil)
	outsider := userCred // uid 1000, not in the control group
	c.who.Store(&outsider)
	params := strings.NewReplacer("{id}", "1", "{seq}", "1", "{owner}", "host")
	for path, item := range doc.Paths.Map() {
		for method, op := range item.Operations() {
			t.Run(method+path, func(t *testing.T) {
				a, _ := op.Extensions["x-access"].(string)
				status, _, body, _ := c.raw(method, params.Replace(path)+"?local=198.18.0.2:1&remote=198.18.0.1:2", "{}")
				switch {
				case a == "control" && status != http.StatusForbidden:
					t.Errorf("x-access control, but an outsider got %d: %s", status, body)
				case a == "any" && status == http.StatusForbidden:
					t.Errorf("x-access any, but an outsider got 403: %s", body)
				case a == "owner" && status != http.StatusForbidden && status != http.StatusNotFound:
					t.Errorf("x-access owner, but an outsider got %d: %s", status, body)
				}
			})
		}
	}
}
