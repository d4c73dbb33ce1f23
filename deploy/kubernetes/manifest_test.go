package kubernetes

import (
	"bytes"
	"encoding/json"
	"os"
	"slices"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
	batchv1 "k8s.io/api/batch/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/yaml"
)

// decodeAll splits a multi-document YAML file and decodes each document
// strictly (an unknown or misspelt field fails) into the k8s.io/api type
// its kind names.
func decodeAll(t *testing.T, path string) []any {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	var out []any
	for i, doc := range bytes.Split(b, []byte("\n---\n")) {
		var tm metav1.TypeMeta
		if err := yaml.Unmarshal(doc, &tm); err != nil {
			t.Fatalf("%s document %d: %v", path, i, err)
		}
		var obj any
		switch tm.APIVersion + " " + tm.Kind {
		case "batch/v1 Job":
			obj = &batchv1.Job{}
		case "v1 PersistentVolumeClaim":
			obj = &corev1.PersistentVolumeClaim{}
		default:
			t.Fatalf("%s document %d: unexpected %s %s", path, i, tm.APIVersion, tm.Kind)
		}
		if err := yaml.UnmarshalStrict(doc, obj); err != nil {
			t.Fatalf("%s document %d (%s): strict decode: %v", path, i, tm.Kind, err)
		}
		out = append(out, obj)
	}
	return out
}

func flagValue(args []string, name string) (string, bool) {
	for _, a := range args {
		if v, ok := strings.CutPrefix(a, "--"+name+"="); ok {
			return v, true
		}
	}
	return "", false
}

func TestFleetJob(t *testing.T) {
	objs := decodeAll(t, "fleet-job.yaml")
	if len(objs) != 2 {
		t.Fatalf("%d documents, want a PVC and a Job", len(objs))
	}
	pvc := objs[0].(*corev1.PersistentVolumeClaim)
	job := objs[1].(*batchv1.Job)
	s := job.Spec
	if s.CompletionMode == nil || *s.CompletionMode != batchv1.IndexedCompletion {
		t.Errorf("completionMode %v, want Indexed (JOB_COMPLETION_INDEX)", s.CompletionMode)
	}
	if s.Completions == nil || s.Parallelism == nil || *s.Completions != *s.Parallelism {
		t.Fatalf("completions %v, parallelism %v: want equal", s.Completions, s.Parallelism)
	}
	if s.ActiveDeadlineSeconds == nil {
		t.Error("no activeDeadlineSeconds: the run is unbounded")
	}
	pod := s.Template.Spec
	if pod.RestartPolicy != corev1.RestartPolicyNever {
		t.Errorf("restartPolicy %q, want Never (a restarted shard would start its devices over)", pod.RestartPolicy)
	}
	if len(pod.Containers) != 1 {
		t.Fatalf("%d containers, want 1", len(pod.Containers))
	}
	c := pod.Containers[0]
	if len(c.Args) == 0 || c.Args[0] != "fleet" {
		t.Fatalf("args %q: want the fleet subcommand", c.Args)
	}
	if n, _ := flagValue(c.Args, "shard-count"); n != itoa(*s.Completions) {
		t.Errorf("--shard-count=%s, completions %d: want equal", n, *s.Completions)
	}
	if _, ok := flagValue(c.Args, "shard"); ok {
		t.Error("--shard given: the index must come from JOB_COMPLETION_INDEX (--shard-count)")
	}
	if _, ok := flagValue(c.Args, "broker"); !ok {
		t.Error("no --broker")
	}
	out, _ := flagValue(c.Args, "out")
	if !strings.Contains(out, "{shard}") {
		t.Errorf("--out=%s: want a {shard} folder per index", out)
	}
	sc := c.SecurityContext
	if sc == nil || sc.Capabilities == nil {
		t.Fatal("no securityContext capabilities")
	}
	var add []string
	for _, cp := range sc.Capabilities.Add {
		add = append(add, string(cp))
	}
	slices.Sort(add)
	if diff := cmp.Diff([]string{"NET_ADMIN", "NET_RAW"}, add); diff != "" {
		t.Errorf("capabilities added (-want +got):\n%s", diff)
	}
	if sc.Privileged != nil && *sc.Privileged {
		t.Error("privileged: the capabilities are enough")
	}
	checkResults(t, pod, c, out, pvc.Name)
	if !slices.Contains(pvc.Spec.AccessModes, corev1.ReadWriteMany) {
		t.Errorf("PVC access modes %v: the shards' pods write it at once (ReadWriteMany)", pvc.Spec.AccessModes)
	}
}

func TestMergeJob(t *testing.T) {
	objs := decodeAll(t, "merge-job.yaml")
	if len(objs) != 1 {
		t.Fatalf("%d documents, want the Job", len(objs))
	}
	job := objs[0].(*batchv1.Job)
	pod := job.Spec.Template.Spec
	c := pod.Containers[0]
	if len(c.Args) < 2 || c.Args[0] != "fleet" || c.Args[1] != "merge" {
		t.Fatalf("args %q: want fleet merge", c.Args)
	}
	fleet := decodeAll(t, "fleet-job.yaml")
	fc := fleet[1].(*batchv1.Job).Spec.Template.Spec.Containers[0]
	shardOut, _ := flagValue(fc.Args, "out")
	dir := c.Args[len(c.Args)-1]
	if !strings.HasPrefix(shardOut, dir+"/") {
		t.Errorf("merges %s, the shards write %s", dir, shardOut)
	}
	if fc.Image != c.Image {
		t.Errorf("image %s, the shards run %s", c.Image, fc.Image)
	}
	checkResults(t, pod, c, dir, fleet[0].(*corev1.PersistentVolumeClaim).Name)
}

// checkResults: path is under a volume mount of c whose volume is the
// results claim.
func checkResults(t *testing.T, pod corev1.PodSpec, c corev1.Container, path, claim string) {
	t.Helper()
	for _, m := range c.VolumeMounts {
		if path != m.MountPath && !strings.HasPrefix(path, m.MountPath+"/") {
			continue
		}
		for _, v := range pod.Volumes {
			if v.Name == m.Name {
				if v.PersistentVolumeClaim == nil || v.PersistentVolumeClaim.ClaimName != claim {
					t.Errorf("volume %s is not the claim %s", v.Name, claim)
				}
				return
			}
		}
		t.Errorf("mount %s names no volume", m.Name)
		return
	}
	t.Errorf("%s is on no volume mount of %s", path, c.Name)
}

func itoa(n int32) string { return strings.TrimSpace(string(must(json.Marshal(n)))) }

func must(b []byte, err error) []byte {
	if err != nil {
		panic(err)
	}
	return b
}
