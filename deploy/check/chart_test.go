package check

import (
	"fmt"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"

	"go.yaml.in/yaml/v3"
	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	networkingv1 "k8s.io/api/networking/v1"
	policyv1 "k8s.io/api/policy/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/validation"
	kjson "sigs.k8s.io/json"
	kyaml "sigs.k8s.io/yaml"
)

var chartDir = filepath.Join(deployDir, "helm", "parley")

// rendered is a chart's output, decoded.
type rendered struct {
	statefulSets []*appsv1.StatefulSet
	services     []*corev1.Service
	configMaps   []*corev1.ConfigMap
	pdbs         []*policyv1.PodDisruptionBudget
	policies     []*networkingv1.NetworkPolicy
}

// decodeStrict decodes every object of a rendered chart into its type of
// k8s.io/api, refusing unknown and duplicate fields, and kinds the chart
// has no business making.
func decodeStrict(t *testing.T, out string) rendered {
	t.Helper()
	var r rendered
	for i, doc := range regexp.MustCompile(`(?m)^---\s*$`).Split(out, -1) {
		if strings.TrimSpace(regexp.MustCompile(`(?m)^#.*$`).ReplaceAllString(doc, "")) == "" {
			continue
		}
		js, err := kyaml.YAMLToJSON([]byte(doc))
		if err != nil {
			t.Fatalf("object %d: %v\n%s", i, err, doc)
		}
		var tm metav1.TypeMeta
		if err := kjson.UnmarshalCaseSensitivePreserveInts(js, &tm); err != nil {
			t.Fatalf("object %d: %v", i, err)
		}
		var obj interface{ GetName() string }
		switch tm.APIVersion + " " + tm.Kind {
		case "apps/v1 StatefulSet":
			o := &appsv1.StatefulSet{}
			r.statefulSets, obj = append(r.statefulSets, o), o
		case "v1 Service":
			o := &corev1.Service{}
			r.services, obj = append(r.services, o), o
		case "v1 ConfigMap":
			o := &corev1.ConfigMap{}
			r.configMaps, obj = append(r.configMaps, o), o
		case "policy/v1 PodDisruptionBudget":
			o := &policyv1.PodDisruptionBudget{}
			r.pdbs, obj = append(r.pdbs, o), o
		case "networking.k8s.io/v1 NetworkPolicy":
			o := &networkingv1.NetworkPolicy{}
			r.policies, obj = append(r.policies, o), o
		default:
			t.Fatalf("object %d: unexpected %s %s", i, tm.APIVersion, tm.Kind)
		}
		strict, err := kjson.UnmarshalStrict(js, obj)
		if err != nil || len(strict) > 0 {
			t.Fatalf("%s %d: %v %v\n%s", tm.Kind, i, err, strict, doc)
		}
		for _, msg := range validation.IsDNS1123Subdomain(obj.GetName()) {
			t.Errorf("%s %q: %s", tm.Kind, obj.GetName(), msg)
		}
	}
	return r
}

func helmTemplate(t *testing.T, helm string, args ...string) rendered {
	t.Helper()
	out, _ := run(t, helm, append([]string{"template", "parley", chartDir, "--namespace", "chat"}, args...)...)
	return decodeStrict(t, out)
}

func TestChartLint(t *testing.T) {
	helm := tool(t, "HELM", "helm")
	files, _ := filepath.Glob(filepath.Join(chartDir, "ci", "*.yaml"))
	if len(files) < 2 {
		t.Fatalf("values files in %s/ci: %v", chartDir, files)
	}
	for _, f := range files {
		run(t, helm, "lint", "--strict", chartDir, "-f", f)
	}
}

// TestChartRendersEveryPart: one StatefulSet per region under a headless
// service for gossip and Raft, a PodDisruptionBudget per region, the
// NetworkPolicy, the cluster key and TLS from Secrets, readiness on
// /readyz, a preStop drain, and a config file of the node's own keys.
func TestChartRendersEveryPart(t *testing.T) {
	helm := tool(t, "HELM", "helm")
	r := helmTemplate(t, helm, "-f", filepath.Join(chartDir, "ci", "three-regions-values.yaml"))

	regions := []string{"eu", "us", "ap"}
	if len(r.statefulSets) != len(regions) || len(r.pdbs) != len(regions) {
		t.Fatalf("%d StatefulSets, %d PodDisruptionBudgets for %d regions", len(r.statefulSets), len(r.pdbs), len(regions))
	}
	var peers *corev1.Service
	for _, s := range r.services {
		if s.Spec.ClusterIP == corev1.ClusterIPNone {
			peers = s
		}
	}
	if peers == nil || !peers.Spec.PublishNotReadyAddresses {
		t.Fatalf("no headless service publishing pods before they are ready: %+v", peers)
	}
	var peerPorts []string
	for _, p := range peers.Spec.Ports {
		peerPorts = append(peerPorts, fmt.Sprintf("%d/%s", p.Port, p.Protocol))
	}
	for _, want := range []string{"7000/TCP", "7946/TCP", "7946/UDP"} {
		if !slices.Contains(peerPorts, want) {
			t.Errorf("headless service ports %v lack %s", peerPorts, want)
		}
	}
	for i, ss := range r.statefulSets {
		region := regions[i]
		if ss.Name != "parley-"+region || ss.Spec.ServiceName != peers.Name {
			t.Errorf("StatefulSet %q serves under %q, want parley-%s under %q", ss.Name, ss.Spec.ServiceName, region, peers.Name)
		}
		if ss.Spec.Selector.MatchLabels["parley.dev/region"] != region || ss.Spec.Template.Labels["parley.dev/region"] != region {
			t.Errorf("%s: selector %v", ss.Name, ss.Spec.Selector.MatchLabels)
		}
		if r.pdbs[i].Spec.Selector.MatchLabels["parley.dev/region"] != region || r.pdbs[i].Spec.MaxUnavailable == nil {
			t.Errorf("PodDisruptionBudget %s: %+v", r.pdbs[i].Name, r.pdbs[i].Spec)
		}
		pod := ss.Spec.Template.Spec
		c := pod.Containers[0]
		if p := c.ReadinessProbe; p == nil || p.HTTPGet == nil || p.HTTPGet.Path != "/readyz" || p.HTTPGet.Scheme != corev1.URISchemeHTTPS {
			t.Errorf("%s: readiness %+v", ss.Name, c.ReadinessProbe)
		}
		if l := c.Lifecycle; l == nil || l.PreStop == nil || l.PreStop.Sleep == nil || l.PreStop.Sleep.Seconds <= 0 {
			t.Errorf("%s: no preStop drain: %+v", ss.Name, c.Lifecycle)
		}
		if pod.TerminationGracePeriodSeconds == nil || c.Lifecycle.PreStop.Sleep.Seconds >= *pod.TerminationGracePeriodSeconds {
			t.Errorf("%s: the drain does not fit in the grace period", ss.Name)
		}
		secrets := map[string]string{}
		for _, v := range pod.Volumes {
			if v.Secret != nil {
				secrets[v.Name] = v.Secret.SecretName
			}
		}
		if secrets["cluster-key"] != "parley-cluster-key" || secrets["tls"] != "parley-tls" {
			t.Errorf("%s: secret volumes %v", ss.Name, secrets)
		}
		env := map[string]corev1.EnvVar{}
		for _, e := range c.Env {
			env[e.Name] = e
		}
		if env["PARLEY_REGION"].Value != region || env["PARLEY_ADVERTISE"].Value != "$(POD_IP)" || env["PARLEY_NODE"].Value != "$(POD_NAME)" {
			t.Errorf("%s: env %v", ss.Name, c.Env)
		}
		if sc := c.SecurityContext; sc == nil || sc.ReadOnlyRootFilesystem == nil || !*sc.ReadOnlyRootFilesystem || sc.AllowPrivilegeEscalation == nil || *sc.AllowPrivilegeEscalation {
			t.Errorf("%s: container security context %+v", ss.Name, c.SecurityContext)
		}
	}
	if len(r.policies) != 1 || len(r.policies[0].Spec.Ingress) != 2 {
		t.Fatalf("NetworkPolicies: %d", len(r.policies))
	}

	// The config file holds the node's own keys, and joins the first
	// region's pod 0 by its name under the headless service.
	if len(r.configMaps) != 1 {
		t.Fatalf("%d ConfigMaps", len(r.configMaps))
	}
	var conf map[string]any
	if err := yaml.Unmarshal([]byte(r.configMaps[0].Data["parley.yaml"]), &conf); err != nil {
		t.Fatal(err)
	}
	keys := settingKeys(t)
	for k := range conf {
		if !keys[k] {
			t.Errorf("the chart's config file has %q, which is no setting of the node", k)
		}
	}
	if j, _ := conf["join"].([]any); len(j) != 1 || j[0] != "parley-eu-0.parley-peers.chat.svc.cluster.local:7000" {
		t.Errorf("join %v", conf["join"])
	}
	if conf["tls-cert"] != "/etc/parley/tls/tls.crt" || conf["cluster-key"] != "/etc/parley/cluster/cluster.key" || conf["workspace-rate"] != "500" {
		t.Errorf("config %v", conf)
	}
}

// TestChartDefaults: the default values with an image render a single
// region over plain HTTP, and without an image the chart refuses to render.
func TestChartDefaults(t *testing.T) {
	helm := tool(t, "HELM", "helm")
	r := helmTemplate(t, helm, "-f", filepath.Join(chartDir, "ci", "default-values.yaml"))
	if len(r.statefulSets) != 1 || *r.statefulSets[0].Spec.Replicas != 3 {
		t.Fatalf("default: %d StatefulSets", len(r.statefulSets))
	}
	c := r.statefulSets[0].Spec.Template.Spec.Containers[0]
	if c.ReadinessProbe.HTTPGet.Scheme != corev1.URISchemeHTTP {
		t.Errorf("without TLS the probe speaks %s", c.ReadinessProbe.HTTPGet.Scheme)
	}
	out, err := exec.Command(helm, "template", "parley", chartDir).CombinedOutput()
	if err == nil || !strings.Contains(string(out), "image.repository") {
		t.Errorf("no image: %v\n%s", err, out)
	}
	out, err = exec.Command(helm, "template", "parley", chartDir, "--set", "image.repository=r/p", "--set", "regions[0].name=EU").CombinedOutput()
	if err == nil || !strings.Contains(string(out), "regions[0].name") {
		t.Errorf("a bad region name: %v\n%s", err, out)
	}
}
