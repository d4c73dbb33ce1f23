// Package kubernetes holds the manifests that run `standbynic fleet` as a
// Kubernetes Indexed Job (fleet-job.yaml) and merge its shards
// (merge-job.yaml), and the test that decodes them strictly with the
// k8s.io/api types. It has no code of its own; see docs/fleet.md.
package kubernetes
