package helm

import (
	"bufio"
	"fmt"
	"os"
	"slices"
	"strings"
	"testing"

	corev1 "k8s.io/api/core/v1"
	networkingv1 "k8s.io/api/networking/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"
)

// peer is one end of a flow: a pod of the namespace (a workload's
// template) or a pod elsewhere, with its namespace's labels.
type peer struct {
	name      string
	namespace string
	nsLabels  map[string]string
	labels    map[string]string
	ports     []string // "8080/TCP": what it serves
}

// outsiders stand for the pods of other namespaces the flows name: any
// client, Prometheus, KEDA and the cluster DNS.
var outsiders = []peer{
	{name: "outside", namespace: "default", nsLabels: map[string]string{"kubernetes.io/metadata.name": "default"}},
	{name: "monitoring", namespace: "monitoring", nsLabels: map[string]string{"kubernetes.io/metadata.name": "monitoring"}},
	{name: "keda", namespace: "keda", nsLabels: map[string]string{"kubernetes.io/metadata.name": "keda"}},
	{name: "kube-dns", namespace: "kube-system", nsLabels: map[string]string{"kubernetes.io/metadata.name": "kube-system"},
		labels: map[string]string{"k8s-app": "kube-dns"}, ports: []string{"53/UDP", "53/TCP"}},
}

// TestNetworkPolicies: the policies deny by default and allow exactly the
// flows of docs/deploy.md's "Network flows" table, computed as Kubernetes
// does: a flow passes when an egress rule of a policy selecting the source
// (or no policy, outside the namespace) and an ingress rule of a policy
// selecting the destination both allow it.
func TestNetworkPolicies(t *testing.T) {
	m := render(t, "defaults")
	ns := m.ns
	var pods []peer
	for _, w := range m.workloads() {
		p := peer{name: w.pod.Labels["app.kubernetes.io/component"], namespace: ns,
			nsLabels: map[string]string{"kubernetes.io/metadata.name": ns}, labels: w.pod.Labels}
		for _, c := range w.pod.Spec.Containers {
			for _, cp := range c.Ports {
				proto := cp.Protocol
				if proto == "" {
					proto = corev1.ProtocolTCP
				}
				p.ports = append(p.ports, fmt.Sprintf("%d/%s", cp.ContainerPort, proto))
			}
		}
		pods = append(pods, p)
	}
	all := append(slices.Clone(pods), outsiders...)
	got := map[string]bool{}
	for _, src := range all {
		for _, dst := range all {
			if src.namespace != ns && dst.namespace != ns {
				continue // not ours to police
			}
			for _, port := range dst.ports {
				if allowed(t, m.netpols, ns, src, dst, port, networkingv1.PolicyTypeEgress) &&
					allowed(t, m.netpols, ns, src, dst, port, networkingv1.PolicyTypeIngress) {
					got[src.name+" -> "+dst.name+" "+port] = true
				}
			}
		}
	}
	want := documentedFlows(t, all)
	for f := range got {
		if !want[f] {
			t.Errorf("the policies allow %s, which docs/deploy.md does not list", f)
		}
	}
	for f := range want {
		if !got[f] {
			t.Errorf("docs/deploy.md lists %s, which the policies do not allow", f)
		}
	}
	if len(got) == 0 {
		t.Fatal("no flow allowed at all")
	}
}

// allowed reports whether the policies of direction dir let src reach
// dst:port. Pods outside the namespace are not ours: allowed on their side.
func allowed(t *testing.T, pols []*networkingv1.NetworkPolicy, ns string, src, dst peer, port string, dir networkingv1.PolicyType) bool {
	t.Helper()
	self, other := dst, src
	if dir == networkingv1.PolicyTypeEgress {
		self, other = src, dst
	}
	if self.namespace != ns {
		return true
	}
	selected := false
	for _, p := range pols {
		if !slices.Contains(p.Spec.PolicyTypes, dir) || !matches(t, &p.Spec.PodSelector, self.labels) {
			continue
		}
		selected = true
		var peers [][]networkingv1.NetworkPolicyPeer
		var ports [][]networkingv1.NetworkPolicyPort
		if dir == networkingv1.PolicyTypeIngress {
			for _, r := range p.Spec.Ingress {
				peers, ports = append(peers, r.From), append(ports, r.Ports)
			}
		} else {
			for _, r := range p.Spec.Egress {
				peers, ports = append(peers, r.To), append(ports, r.Ports)
			}
		}
		for i := range peers {
			if portMatches(ports[i], port) && peerMatches(t, peers[i], ns, other) {
				return true
			}
		}
	}
	return !selected
}

func matches(t *testing.T, sel *metav1.LabelSelector, l map[string]string) bool {
	t.Helper()
	s, err := metav1.LabelSelectorAsSelector(sel)
	if err != nil {
		t.Fatalf("selector %v: %v", sel, err)
	}
	return s.Matches(labels.Set(l))
}

func portMatches(ports []networkingv1.NetworkPolicyPort, port string) bool {
	if len(ports) == 0 {
		return true
	}
	for _, p := range ports {
		proto := corev1.ProtocolTCP
		if p.Protocol != nil {
			proto = *p.Protocol
		}
		if p.Port != nil && fmt.Sprintf("%s/%s", p.Port.String(), proto) == port {
			return true
		}
	}
	return false
}

func peerMatches(t *testing.T, peers []networkingv1.NetworkPolicyPeer, ns string, other peer) bool {
	if len(peers) == 0 {
		return true
	}
	for _, p := range peers {
		if p.IPBlock != nil {
			t.Errorf("ipBlock peers are not checked by this test")
			continue
		}
		nsOK := other.namespace == ns
		if p.NamespaceSelector != nil {
			nsOK = matches(t, p.NamespaceSelector, other.nsLabels)
		}
		podOK := p.PodSelector == nil || matches(t, p.PodSelector, other.labels)
		if nsOK && podOK {
			return true
		}
	}
	return false
}

// documentedFlows reads the table under "## Network flows" in
// docs/deploy.md: | from | to | ports |. "any pod" in from means every pod
// of the namespace, "outside" any pod of another namespace (Prometheus, KEDA
// and the DNS included).
func documentedFlows(t *testing.T, all []peer) map[string]bool {
	t.Helper()
	f, err := os.Open("../../docs/deploy.md")
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	out := map[string]bool{}
	in := false
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		line := strings.TrimSpace(sc.Text())
		if strings.HasPrefix(line, "## ") {
			in = line == "## Network flows"
			continue
		}
		if !in || !strings.HasPrefix(line, "| `") {
			continue
		}
		cells := strings.Split(strings.Trim(line, "|"), "|")
		if len(cells) < 3 {
			t.Fatalf("docs/deploy.md: flow row %q: want | from | to | ports |", line)
		}
		unq := func(s string) []string {
			var out []string
			for _, f := range strings.Split(s, ",") {
				out = append(out, strings.Trim(strings.TrimSpace(f), "`"))
			}
			return out
		}
		var froms []string
		for _, from := range unq(cells[0]) {
			switch from {
			case "any pod":
				for _, p := range all {
					if !slices.ContainsFunc(outsiders, func(o peer) bool { return o.name == p.name }) {
						froms = append(froms, p.name)
					}
				}
			case "outside":
				for _, o := range outsiders {
					froms = append(froms, o.name)
				}
			default:
				froms = append(froms, from)
			}
		}
		for _, from := range froms {
			for _, to := range unq(cells[1]) {
				for _, port := range unq(cells[2]) {
					if !strings.Contains(port, "/") {
						port += "/TCP"
					}
					out[from+" -> "+to+" "+port] = true
				}
			}
		}
	}
	if len(out) == 0 {
		t.Fatal(`docs/deploy.md: no table under "## Network flows"`)
	}
	return out
}

// TestRedisPassword: Redis requires the password of Secret inferq-redis,
// and every container that talks to it (the exporter, and the inferq
// services whose config names Redis) gets that Secret's password, the
// inferq ones in INFERQ_REDIS_URL after the variable it expands.
func TestRedisPassword(t *testing.T) {
	eachSet(t, func(t *testing.T, set string, m *manifests) {
		scheme := "redis"
		if set == "external" {
			scheme = "rediss" // redis.external.tls
		}
		fromSecret := func(e corev1.EnvVar) bool {
			return e.ValueFrom != nil && e.ValueFrom.SecretKeyRef != nil &&
				e.ValueFrom.SecretKeyRef.Name == "inferq-redis" && e.ValueFrom.SecretKeyRef.Key == "password"
		}
		users := 0
		for _, w := range m.workloads() {
			for _, c := range w.pod.Spec.Containers {
				where := w.name + "/" + c.Name
				env := map[string]int{}
				for i, e := range c.Env {
					env[e.Name] = i
				}
				pw, hasPW := env["REDIS_PASSWORD"]
				switch {
				case w.name == "redis" && c.Name == "redis":
					if !hasPW || !fromSecret(c.Env[pw]) || !strings.Contains(strings.Join(c.Command, " "), `--requirepass "$REDIS_PASSWORD"`) {
						t.Errorf("%s: want --requirepass with REDIS_PASSWORD from Secret inferq-redis", where)
					}
					if i, ok := env["REDISCLI_AUTH"]; !ok || !fromSecret(c.Env[i]) {
						t.Errorf("%s: the probes' redis-cli needs REDISCLI_AUTH from the Secret", where)
					}
				case w.name == "redis":
					if !hasPW || !fromSecret(c.Env[pw]) {
						t.Errorf("%s: the exporter needs REDIS_PASSWORD from Secret inferq-redis", where)
					}
				default:
					bin, ok := inferqBinary(c)
					if !ok || (bin != "ingress" && bin != "resultsvc") {
						if hasPW {
							t.Errorf("%s: does not use Redis, yet gets its password", where)
						}
						continue
					}
					users++
					u, ok := env["INFERQ_REDIS_URL"]
					if !hasPW || !fromSecret(c.Env[pw]) || !ok || u < pw ||
						!strings.HasPrefix(c.Env[u].Value, scheme+"://:$(REDIS_PASSWORD)@") {
						t.Errorf("%s: want REDIS_PASSWORD from Secret inferq-redis, then INFERQ_REDIS_URL redis://:$(REDIS_PASSWORD)@...", where)
					}
				}
			}
		}
		if users != 2 {
			t.Errorf("%d ingress and resultsvc containers checked, want 2", users)
		}
		if _, ok := m.workload("StatefulSet", "redis"); ok == (set == "external") {
			t.Errorf("Redis StatefulSet rendered %v, want it only with redis.install", ok)
		}
	})
}
