package nic

import "slices"

// ControlRoutes returns the route table of s: each path pattern the mux
// serves and the methods it takes, sorted.
func ControlRoutes(s *ControlServer) map[string][]string {
	out := map[string][]string{}
	for _, rt := range s.routeTable {
		for m := range rt.methods {
			out[rt.pattern] = append(out[rt.pattern], m)
		}
		slices.Sort(out[rt.pattern])
	}
	return out
}

// SetTestOnResponse makes every control server of the test binary report
// the status of each response of a route to f. Call it before any server
// starts (TestMain).
func SetTestOnResponse(f func(pattern, method string, status int)) { testOnResponse = f }
