package check

import (
	"fmt"
	"io"
	"log/slog"
	"math"
	"os"
	"path"
	"slices"
	"sort"
	"strings"
	"testing"
	"time"

	"helm.sh/helm/v4/pkg/chart/common"
	"helm.sh/helm/v4/pkg/chart/common/util"
	chart "helm.sh/helm/v4/pkg/chart/v2"
	"helm.sh/helm/v4/pkg/chart/v2/lint"
	"helm.sh/helm/v4/pkg/chart/v2/lint/support"
	"helm.sh/helm/v4/pkg/chart/v2/loader"
	chartutil "helm.sh/helm/v4/pkg/chart/v2/util"
	"helm.sh/helm/v4/pkg/engine"
	releaseutil "helm.sh/helm/v4/pkg/release/v1/util"
	appsv1 "k8s.io/api/apps/v1"
	autoscalingv2 "k8s.io/api/autoscaling/v2"
	corev1 "k8s.io/api/core/v1"
	policyv1 "k8s.io/api/policy/v1"
	"sigs.k8s.io/yaml"

	"github.com/vmcp/vmcp/config"
)

const (
	chartDir    = "../vmcp"
	examplePath = "../vmcp/examples/oidc-redis.yaml"
	releaseName = "vmcp"
	namespace   = "mcp"
	// kubeVersion is the cluster version rendered for (Helm's offline
	// default is older than the chart's kubeVersion).
	kubeVersion = "v1.32.0"
)

// rendered holds the objects of one `helm template`, decoded strictly.
type rendered struct {
	deployment     *appsv1.Deployment
	service        *corev1.Service
	configMap      *corev1.ConfigMap
	serviceAccount *corev1.ServiceAccount
	pdb            *policyv1.PodDisruptionBudget
	hpa            *autoscalingv2.HorizontalPodAutoscaler
	serviceMonitor *serviceMonitor
}

// serviceMonitor is the part of monitoring.coreos.com/v1 ServiceMonitor the
// chart writes; decoding it strictly refuses any field not listed here.
type serviceMonitor struct {
	APIVersion string `json:"apiVersion"`
	Kind       string `json:"kind"`
	Metadata   struct {
		Name      string            `json:"name"`
		Namespace string            `json:"namespace"`
		Labels    map[string]string `json:"labels"`
	} `json:"metadata"`
	Spec struct {
		Selector struct {
			MatchLabels map[string]string `json:"matchLabels"`
		} `json:"selector"`
		NamespaceSelector struct {
			MatchNames []string `json:"matchNames"`
		} `json:"namespaceSelector"`
		Endpoints []struct {
			Port          string `json:"port"`
			Path          string `json:"path"`
			Interval      string `json:"interval"`
			ScrapeTimeout string `json:"scrapeTimeout"`
		} `json:"endpoints"`
	} `json:"spec"`
}

// TestMain quiets Helm's own log (rendering errors are returned and checked).
func TestMain(m *testing.M) {
	slog.SetDefault(slog.New(slog.NewTextHandler(io.Discard, nil)))
	os.Exit(m.Run())
}

func loadChart(t *testing.T) *chart.Chart {
	t.Helper()
	ch, err := loader.Load(chartDir)
	if err != nil {
		t.Fatalf("load chart: %v", err)
	}
	return ch
}

func exampleValues(t *testing.T) map[string]any {
	t.Helper()
	data, err := os.ReadFile(examplePath)
	if err != nil {
		t.Fatal(err)
	}
	var v map[string]any
	if err := yaml.Unmarshal(data, &v); err != nil {
		t.Fatalf("%s: %v", examplePath, err)
	}
	return v
}

// with returns the example values with overrides merged in (maps deeply).
func with(t *testing.T, overrides string) map[string]any {
	t.Helper()
	var o map[string]any
	if err := yaml.Unmarshal([]byte(overrides), &o); err != nil {
		t.Fatalf("overrides: %v", err)
	}
	return loader.MergeMaps(exampleValues(t), o)
}

// template renders the chart as `helm template vmcp deploy/helm/vmcp -n mcp
// --kube-version 1.32` does, and returns the manifest: the chart's
// kubeVersion checked, the values coalesced with the chart's (and checked
// against a schema, if the chart has one), the templates rendered by Helm's
// engine, partials and NOTES.txt left out. (action.Install in client-only
// dry-run mode does the same, but brings the Kubernetes client packages and
// doubles the check's build time.)
func template(t *testing.T, vals map[string]any) (string, error) {
	t.Helper()
	ch := loadChart(t)
	caps := common.DefaultCapabilities.Copy()
	kv, err := common.ParseKubeVersion(kubeVersion)
	if err != nil {
		t.Fatal(err)
	}
	caps.KubeVersion = *kv
	if c := ch.Metadata.KubeVersion; c != "" && !chartutil.IsCompatibleRange(c, caps.KubeVersion.String()) {
		return "", fmt.Errorf("chart requires kubeVersion %s, rendering for %s", c, caps.KubeVersion.String())
	}
	opts := common.ReleaseOptions{Name: releaseName, Namespace: namespace, Revision: 1, IsInstall: true}
	top, err := util.ToRenderValuesWithSchemaValidation(ch, vals, opts, caps, false)
	if err != nil {
		return "", err
	}
	files, err := engine.Render(ch, top)
	if err != nil {
		return "", err
	}
	names := make([]string, 0, len(files))
	for name := range files {
		names = append(names, name)
	}
	sort.Strings(names)
	var b strings.Builder
	for _, name := range names {
		base := path.Base(name)
		if strings.HasPrefix(base, "_") || base == "NOTES.txt" || strings.TrimSpace(files[name]) == "" {
			continue
		}
		fmt.Fprintf(&b, "---\n# Source: %s\n%s\n", name, files[name])
	}
	return b.String(), nil
}

// decodeStrict decodes one YAML document into v, refusing unknown and
// duplicate fields.
func decodeStrict(doc string, v any) error {
	return yaml.UnmarshalStrict([]byte(doc), v)
}

func render(t *testing.T, vals map[string]any) rendered {
	t.Helper()
	manifest, err := template(t, vals)
	if err != nil {
		t.Fatalf("helm template: %v", err)
	}
	var r rendered
	docs := releaseutil.SplitManifests(manifest)
	keys := make([]string, 0, len(docs))
	for k := range docs {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	for _, k := range keys {
		doc := docs[k]
		var meta struct {
			APIVersion string `json:"apiVersion"`
			Kind       string `json:"kind"`
		}
		if err := yaml.Unmarshal([]byte(doc), &meta); err != nil {
			t.Fatalf("%s: %v\n%s", k, err, doc)
		}
		var obj any
		switch meta.APIVersion + " " + meta.Kind {
		case "apps/v1 Deployment":
			r.deployment = new(appsv1.Deployment)
			obj = r.deployment
		case "v1 Service":
			r.service = new(corev1.Service)
			obj = r.service
		case "v1 ConfigMap":
			r.configMap = new(corev1.ConfigMap)
			obj = r.configMap
		case "v1 ServiceAccount":
			r.serviceAccount = new(corev1.ServiceAccount)
			obj = r.serviceAccount
		case "policy/v1 PodDisruptionBudget":
			r.pdb = new(policyv1.PodDisruptionBudget)
			obj = r.pdb
		case "autoscaling/v2 HorizontalPodAutoscaler":
			r.hpa = new(autoscalingv2.HorizontalPodAutoscaler)
			obj = r.hpa
		case "monitoring.coreos.com/v1 ServiceMonitor":
			r.serviceMonitor = new(serviceMonitor)
			obj = r.serviceMonitor
		default:
			t.Fatalf("unexpected object %s %s:\n%s", meta.APIVersion, meta.Kind, doc)
		}
		if err := decodeStrict(doc, obj); err != nil {
			t.Fatalf("%s %s does not decode strictly: %v\n%s", meta.APIVersion, meta.Kind, err, doc)
		}
	}
	for name, got := range map[string]bool{
		"Deployment": r.deployment != nil, "Service": r.service != nil, "ConfigMap": r.configMap != nil,
	} {
		if !got {
			t.Fatalf("no %s rendered:\n%s", name, manifest)
		}
	}
	return r
}

// parseConfig parses the ConfigMap's vmcp.yaml with vmcp's own parser, the
// environment being the Deployment's env (values are placeholders).
func parseConfig(t *testing.T, r rendered) (*config.Config, map[string]any) {
	t.Helper()
	text, ok := r.configMap.Data["vmcp.yaml"]
	if !ok {
		t.Fatalf("ConfigMap has no vmcp.yaml: %v", r.configMap.Data)
	}
	var doc map[string]any
	if err := yaml.Unmarshal([]byte(text), &doc); err != nil {
		t.Fatalf("vmcp.yaml: %v", err)
	}
	raw, _ := yaml.Marshal(doc)
	trimmed, err := yaml.Marshal(doc)
	if err != nil {
		t.Fatal(err)
	}
	env := map[string]bool{}
	for _, e := range container(t, r).Env {
		env[e.Name] = true
	}
	cfg, err := config.Parse(trimmed, func(name string) (string, bool) {
		if env[name] {
			return "placeholder", true
		}
		return "", false
	})
	if err != nil {
		t.Fatalf("config.Parse of the ConfigMap's vmcp.yaml: %v\n%s", err, raw)
	}
	var full map[string]any
	_ = yaml.Unmarshal([]byte(text), &full)
	return cfg, full
}

func container(t *testing.T, r rendered) corev1.Container {
	t.Helper()
	cs := r.deployment.Spec.Template.Spec.Containers
	if len(cs) != 1 {
		t.Fatalf("want one container, got %d", len(cs))
	}
	return cs[0]
}

// durationOf reads a duration as vmcp does ("5s" or {duration: 5s}), def when unset.
func durationOf(t *testing.T, v any, def time.Duration) time.Duration {
	t.Helper()
	if m, ok := v.(map[string]any); ok {
		v = m["duration"]
	}
	if v == nil {
		return def
	}
	d, err := time.ParseDuration(fmt.Sprint(v))
	if err != nil {
		t.Fatalf("duration %v: %v", v, err)
	}
	return d
}

func wholeSeconds(d time.Duration) int64 { return int64(math.Ceil(d.Seconds())) }

// graceNeeded is preStop sleep + drainGrace + shutdownTimeout from the rendered config.
func graceNeeded(t *testing.T, r rendered, full map[string]any) int64 {
	t.Helper()
	server, _ := full["server"].(map[string]any)
	need := wholeSeconds(durationOf(t, server["drainGrace"], 5*time.Second)) +
		wholeSeconds(durationOf(t, server["shutdownTimeout"], 15*time.Second))
	if l := container(t, r).Lifecycle; l != nil && l.PreStop != nil && l.PreStop.Sleep != nil {
		need += l.PreStop.Sleep.Seconds
	}
	return need
}

func TestLint(t *testing.T) {
	kv, err := common.ParseKubeVersion(kubeVersion)
	if err != nil {
		t.Fatal(err)
	}
	// helm lint treats a missing required value as a warning-free pass
	// (lint mode), so the default values lint clean too; rendering them
	// fails, below.
	for name, vals := range map[string]map[string]any{examplePath: exampleValues(t), "the default values": nil} {
		res := lint.RunAll(chartDir, vals, namespace, lint.WithKubeVersion(kv))
		for _, m := range res.Messages {
			t.Logf("lint with %s: %s", name, m)
		}
		if res.HighestSeverity >= support.WarningSev {
			t.Errorf("helm lint with %s: highest severity %d", name, res.HighestSeverity)
		}
	}
}

// The default values render nothing: the user must choose how clients
// authenticate, since vmcp listens on 0.0.0.0 in the pod.
func TestDefaultValuesNeedAuth(t *testing.T) {
	_, err := template(t, nil)
	if err == nil || !strings.Contains(err.Error(), "config.incomingAuth.type is required") {
		t.Fatalf("helm template with the default values: want the error naming config.incomingAuth.type, got %v", err)
	}
	// With auth chosen, the defaults render and vmcp accepts its config.
	r := render(t, map[string]any{"config": map[string]any{
		"incomingAuth": map[string]any{"type": "anonymous", "allowAnonymousNetwork": true},
		"backends":     []any{map[string]any{"name": "demo", "transport": "streamable-http", "url": "http://demo.mcp.svc:8080/mcp"}},
	}})
	cfg, _ := parseConfig(t, r)
	if *r.deployment.Spec.Replicas != 1 || cfg.Server.Host != "0.0.0.0" || cfg.Server.Port != 4483 {
		t.Fatalf("defaults: replicas %d, listen %s:%d", *r.deployment.Spec.Replicas, cfg.Server.Host, cfg.Server.Port)
	}
	if r.pdb == nil || r.pdb.Spec.MaxUnavailable == nil || r.pdb.Spec.MaxUnavailable.IntValue() != 1 {
		t.Fatalf("default PDB: %+v", r.pdb)
	}
	if r.hpa != nil || r.serviceMonitor != nil {
		t.Fatal("HPA and ServiceMonitor must be off by default")
	}
	if got := *r.deployment.Spec.Template.Spec.TerminationGracePeriodSeconds; got != 30 {
		t.Fatalf("default terminationGracePeriodSeconds %d, want 5 + 15 + 10 = 30", got)
	}
}

func TestExample(t *testing.T) {
	r := render(t, exampleValues(t))
	cfg, full := parseConfig(t, r)
	d := r.deployment
	pod := d.Spec.Template.Spec
	c := container(t, r)

	if d.Spec.Replicas == nil || *d.Spec.Replicas != 3 {
		t.Errorf("replicas %v, want 3", d.Spec.Replicas)
	}
	// Three replicas share their sessions (and rate limits) in Redis.
	if cfg.Sessions.Store != config.SessionStoreRedis || cfg.Redis == nil || cfg.Redis.Address == "" {
		t.Errorf("sessions.store %q, redis %+v: three replicas need sessions in Redis", cfg.Sessions.Store, cfg.Redis)
	}
	if c.Image != "registry.example.com/vmcp:0.1.0" {
		t.Errorf("image %q", c.Image)
	}
	if want := []string{"serve", "--config", "/etc/vmcp/vmcp.yaml"}; !slices.Equal(c.Args, want) || len(c.Command) != 0 {
		t.Errorf("command %v args %v, want the image's entrypoint with %v", c.Command, c.Args, want)
	}

	// The config: vmcp listens on every address, on the container's port.
	if cfg.Server.Host != "0.0.0.0" {
		t.Errorf("server.host %q, want 0.0.0.0", cfg.Server.Host)
	}
	if len(c.Ports) != 1 || int(c.Ports[0].ContainerPort) != cfg.Server.Port || c.Ports[0].Name != "http" {
		t.Errorf("container ports %+v, config port %d", c.Ports, cfg.Server.Port)
	}
	if cfg.IncomingAuth.Type != config.AuthOIDC || cfg.Redis == nil {
		t.Errorf("incomingAuth %q, redis %v", cfg.IncomingAuth.Type, cfg.Redis)
	}
	for _, h := range []string{"vmcp.example.com", "vmcp", "vmcp.mcp", "vmcp.mcp.svc", "vmcp.mcp.svc.cluster.local"} {
		if !slices.Contains(cfg.Server.AllowedHosts, h) {
			t.Errorf("server.allowedHosts %v lacks %q", cfg.Server.AllowedHosts, h)
		}
	}

	// The config file is the ConfigMap, mounted read-only at /etc/vmcp.
	var mounted bool
	for _, m := range c.VolumeMounts {
		if m.MountPath == "/etc/vmcp" && m.ReadOnly {
			for _, v := range pod.Volumes {
				if v.Name == m.Name && v.ConfigMap != nil && v.ConfigMap.Name == r.configMap.Name &&
					len(v.ConfigMap.Items) == 1 && v.ConfigMap.Items[0].Key == "vmcp.yaml" && v.ConfigMap.Items[0].Path == "vmcp.yaml" {
					mounted = true
				}
			}
		}
	}
	if !mounted {
		t.Errorf("ConfigMap %s is not mounted read-only as /etc/vmcp/vmcp.yaml: %+v %+v", r.configMap.Name, c.VolumeMounts, pod.Volumes)
	}
	if d.Spec.Template.Annotations["checksum/config"] == "" {
		t.Error("no checksum/config annotation: a config change would not roll the pods")
	}

	// Every variable the config names comes from a Secret, by reference.
	refs := map[string]*corev1.SecretKeySelector{}
	for _, e := range c.Env {
		if e.ValueFrom != nil && e.ValueFrom.SecretKeyRef != nil {
			refs[e.Name] = e.ValueFrom.SecretKeyRef
		} else if e.Value != "" {
			t.Errorf("env %s has a literal value", e.Name)
		}
	}
	for _, name := range envNames(full) {
		ref := refs[name]
		if ref == nil || ref.Name == "" || ref.Key == "" {
			t.Errorf("the config names %s but the Deployment does not take it from a Secret (env %+v)", name, c.Env)
		}
	}
	if len(envNames(full)) < 2 {
		t.Errorf("example should name a header token and the Redis password, names %v", envNames(full))
	}

	// Every key file the config names (privateKeyFile) is a Secret's key,
	// mounted read-only at that path and readable by vmcp's user only.
	files := 0
	for name, a := range cfg.OutgoingAuth.Backends {
		if a.PrivateKeyFile == "" {
			continue
		}
		files++
		var ok bool
		for _, m := range c.VolumeMounts {
			if m.MountPath != a.PrivateKeyFile || !m.ReadOnly || m.SubPath == "" {
				continue
			}
			for _, v := range pod.Volumes {
				if v.Name == m.Name && v.Secret != nil && v.Secret.SecretName != "" && v.Secret.DefaultMode != nil && *v.Secret.DefaultMode == 0o400 &&
					len(v.Secret.Items) == 1 && v.Secret.Items[0].Path == m.SubPath {
					ok = true
				}
			}
		}
		if !ok {
			t.Errorf("outgoingAuth.backends.%s.privateKeyFile %s is not mounted read-only from a Secret: %+v %+v", name, a.PrivateKeyFile, c.VolumeMounts, pod.Volumes)
		}
	}
	if files == 0 {
		t.Error("example should show a private_key_jwt key file mounted from a Secret")
	}

	// Probes: readiness on /readyz, liveness on /healthz, with a Host
	// vmcp's DNS-rebinding check allows whatever allowedHosts says.
	for name, p := range map[string]*corev1.Probe{"/readyz": c.ReadinessProbe, "/healthz": c.LivenessProbe} {
		if p == nil || p.HTTPGet == nil || p.HTTPGet.Path != name || p.HTTPGet.Port.String() != "http" {
			t.Errorf("probe for %s: %+v", name, p)
			continue
		}
		if len(p.HTTPGet.HTTPHeaders) != 1 || p.HTTPGet.HTTPHeaders[0].Name != "Host" || !config.IsLoopbackHost(p.HTTPGet.HTTPHeaders[0].Value) {
			t.Errorf("probe %s headers %+v, want a loopback Host", name, p.HTTPGet.HTTPHeaders)
		}
	}

	// Termination: the grace period covers drainGrace + shutdownTimeout.
	grace := *pod.TerminationGracePeriodSeconds
	if need := graceNeeded(t, r, full); grace <= need || need != 20 {
		t.Errorf("terminationGracePeriodSeconds %d, drainGrace + shutdownTimeout %d s", grace, need)
	}
	if grace != 30 {
		t.Errorf("terminationGracePeriodSeconds %d, want 5 + 15 + 10 (margin) = 30", grace)
	}
	if c.Lifecycle != nil {
		t.Errorf("no preStop by default (vmcp's drainGrace does its job): %+v", c.Lifecycle)
	}

	// Resources and a restrictive security context.
	for _, rl := range []corev1.ResourceList{c.Resources.Requests, c.Resources.Limits} {
		if rl.Cpu().IsZero() || rl.Memory().IsZero() {
			t.Errorf("resources %+v: want cpu and memory requests and limits", c.Resources)
		}
	}
	assertRestricted(t, pod, c)
	if pod.AutomountServiceAccountToken == nil || *pod.AutomountServiceAccountToken {
		t.Error("the service account token must not be mounted")
	}

	// Service and PDB select the pods.
	podLabels := d.Spec.Template.Labels
	selects := func(sel map[string]string) bool {
		for k, v := range sel {
			if podLabels[k] != v {
				return false
			}
		}
		return len(sel) > 0
	}
	if !selects(r.service.Spec.Selector) || !selects(d.Spec.Selector.MatchLabels) {
		t.Errorf("service selector %v / deployment selector %v do not select pod labels %v", r.service.Spec.Selector, d.Spec.Selector.MatchLabels, podLabels)
	}
	if len(r.service.Spec.Ports) != 1 || r.service.Spec.Ports[0].TargetPort.String() != "http" {
		t.Errorf("service ports %+v", r.service.Spec.Ports)
	}
	if r.pdb == nil || !selects(r.pdb.Spec.Selector.MatchLabels) || r.pdb.Spec.MaxUnavailable.IntValue() != 1 {
		t.Errorf("PDB %+v", r.pdb)
	}
	if sel := pod.TopologySpreadConstraints; len(sel) != 1 || !selects(sel[0].LabelSelector.MatchLabels) {
		t.Errorf("the example's topology spread does not select the pods: %+v", sel)
	}
	if r.hpa != nil || r.serviceMonitor != nil {
		t.Error("the example has no HPA and no ServiceMonitor")
	}
	if ro := d.Spec.Strategy.RollingUpdate; ro == nil || ro.MaxUnavailable.IntValue() != 0 {
		t.Errorf("rolling update %+v: want maxUnavailable 0", ro)
	}
}

func assertRestricted(t *testing.T, pod corev1.PodSpec, c corev1.Container) {
	t.Helper()
	ps, cs := pod.SecurityContext, c.SecurityContext
	if ps == nil || cs == nil {
		t.Fatal("no security context")
	}
	isTrue := func(b *bool) bool { return b != nil && *b }
	isFalse := func(b *bool) bool { return b != nil && !*b }
	if !isTrue(ps.RunAsNonRoot) || !isTrue(cs.RunAsNonRoot) || ps.RunAsUser == nil || *ps.RunAsUser == 0 {
		t.Errorf("not non-root: pod %+v container %+v", ps, cs)
	}
	if !isTrue(cs.ReadOnlyRootFilesystem) || !isFalse(cs.AllowPrivilegeEscalation) || isTrue(cs.Privileged) {
		t.Errorf("container security context %+v", cs)
	}
	if cs.Capabilities == nil || !slices.Equal(cs.Capabilities.Drop, []corev1.Capability{"ALL"}) || len(cs.Capabilities.Add) != 0 {
		t.Errorf("capabilities %+v, want drop ALL", cs.Capabilities)
	}
	for _, sp := range []*corev1.SeccompProfile{ps.SeccompProfile, cs.SeccompProfile} {
		if sp == nil || sp.Type != corev1.SeccompProfileTypeRuntimeDefault {
			t.Errorf("seccomp %+v, want RuntimeDefault", sp)
		}
	}
}

// envNames lists the environment variables a config names: every value of
// a key ending in "Env" (headerValueEnv, passwordEnv, clientSecretEnv).
func envNames(v any) []string {
	var out []string
	var walk func(any)
	walk = func(v any) {
		switch v := v.(type) {
		case map[string]any:
			for k, x := range v {
				if s, ok := x.(string); ok && strings.HasSuffix(k, "Env") && s != "" {
					out = append(out, s)
				}
				walk(x)
			}
		case []any:
			for _, x := range v {
				walk(x)
			}
		}
	}
	walk(v)
	sort.Strings(out)
	return out
}

func TestAutoscalingAndServiceMonitor(t *testing.T) {
	r := render(t, with(t, `
autoscaling: {enabled: true, minReplicas: 3, maxReplicas: 6, targetCPUUtilizationPercentage: 60}
serviceMonitor: {enabled: true, labels: {release: prometheus}}
`))
	if cfg, _ := parseConfig(t, r); cfg.Sessions.Store != config.SessionStoreRedis {
		t.Errorf("sessions.store %q, want redis", cfg.Sessions.Store)
	}
	if r.deployment.Spec.Replicas != nil {
		t.Errorf("with the HPA on, the Deployment must not set replicas (got %d)", *r.deployment.Spec.Replicas)
	}
	h := r.hpa
	if h == nil || h.Spec.ScaleTargetRef.Kind != "Deployment" || h.Spec.ScaleTargetRef.Name != r.deployment.Name ||
		*h.Spec.MinReplicas != 3 || h.Spec.MaxReplicas != 6 || len(h.Spec.Metrics) != 1 ||
		h.Spec.Metrics[0].Resource.Name != corev1.ResourceCPU || *h.Spec.Metrics[0].Resource.Target.AverageUtilization != 60 {
		t.Errorf("HPA %+v", h)
	}
	sm := r.serviceMonitor
	if sm == nil || sm.APIVersion != "monitoring.coreos.com/v1" || sm.Kind != "ServiceMonitor" ||
		len(sm.Spec.Endpoints) != 1 || sm.Spec.Endpoints[0].Port != "http" || sm.Spec.Endpoints[0].Path != "/metrics" ||
		sm.Metadata.Labels["release"] != "prometheus" || !slices.Equal(sm.Spec.NamespaceSelector.MatchNames, []string{namespace}) {
		t.Errorf("ServiceMonitor %+v", sm)
	}
	for k, v := range sm.Spec.Selector.MatchLabels {
		if r.service.Labels[k] != v {
			t.Errorf("ServiceMonitor selector %v does not select the Service %v", sm.Spec.Selector.MatchLabels, r.service.Labels)
		}
	}
}

// The grace period follows drainGrace, shutdownTimeout and a preStop sleep.
func TestTerminationGrace(t *testing.T) {
	for _, tc := range []struct {
		values string
		want   int64
	}{
		{`config: {server: {drainGrace: 10s, shutdownTimeout: 1m}}`, 10 + 60 + 10},
		{`config: {server: {drainGrace: {duration: 1m30s}, shutdownTimeout: 1500ms}}`, 90 + 2 + 10},
		{`config: {server: {drainGrace: "0", shutdownTimeout: 2h}}`, 7200 + 10},
		{`{preStopSleepSeconds: 5, terminationGraceMarginSeconds: 3}`, 5 + 5 + 15 + 3},
		{`terminationGracePeriodSeconds: 45`, 45},
	} {
		r := render(t, with(t, tc.values))
		_, full := parseConfig(t, r)
		grace := *r.deployment.Spec.Template.Spec.TerminationGracePeriodSeconds
		if grace != tc.want {
			t.Errorf("%s: terminationGracePeriodSeconds %d, want %d", tc.values, grace, tc.want)
		}
		if need := graceNeeded(t, r, full); grace <= need {
			t.Errorf("%s: terminationGracePeriodSeconds %d does not exceed %d", tc.values, grace, need)
		}
		if strings.Contains(tc.values, "preStopSleepSeconds") {
			l := container(t, r).Lifecycle
			if l == nil || l.PreStop == nil || l.PreStop.Sleep == nil || l.PreStop.Sleep.Seconds != 5 {
				t.Errorf("preStop %+v, want sleep 5", l)
			}
		}
	}
}

// Values the chart refuses, each with an error naming the value to fix.
func TestRefusals(t *testing.T) {
	for _, tc := range []struct {
		values, want string
	}{
		{`config: {incomingAuth: {type: anonymous, oidc: null}}`, "config.incomingAuth.allowAnonymousNetwork: true"},
		{`config: {sessions: null}`, "more than one replica needs config.sessions.store: redis"},
		{`config: {sessions: {store: memory}}`, "more than one replica needs config.sessions.store: redis"},
		{`{replicaCount: 1, autoscaling: {enabled: true, maxReplicas: 4}, config: {sessions: null}}`, "more than one replica needs config.sessions.store: redis"},
		{`config: {redis: null}`, "more than one replica with config.sessions.store: redis needs config.redis.address"},
		{`config: {redis: {address: ""}}`, "more than one replica with config.sessions.store: redis needs config.redis.address"},
		{`config: {server: {host: 127.0.0.1}}`, `config.server.host "127.0.0.1" is loopback`},
		{`config: {backends: []}`, "config.backends is required"},
		{`config: {server: {drainGrace: 5 seconds}}`, `config.server.drainGrace: "5 seconds" is not a Go duration`},
		{`terminationGracePeriodSeconds: 20`, "terminationGracePeriodSeconds 20 must exceed"},
		{`{serviceMonitor: {enabled: true}, config: {telemetry: {prometheus: false}}}`, "serviceMonitor.enabled needs config.telemetry.prometheus: true"},
		{`secretEnv: [{name: X, key: k}]`, "secretEnv X: secretName is required"},
		{`secretFiles: [{key: k, mountPath: /k}]`, "secretFiles[0]: secretName is required"},
		{`secretFiles: [{secretName: s, mountPath: /k}]`, "secretFiles[0]: key is required"},
		{`secretFiles: [{secretName: s, key: k}]`, "secretFiles[0]: mountPath is required"},
	} {
		_, err := template(t, with(t, tc.values))
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%s: want an error with %q, got %v", tc.values, tc.want, err)
		}
	}
}

// One replica may keep its sessions in memory (the default); several need
// them in Redis (TestRefusals).
func TestOneReplicaInMemory(t *testing.T) {
	r := render(t, with(t, `{replicaCount: 1, config: {sessions: {store: memory}}}`))
	if cfg, _ := parseConfig(t, r); *r.deployment.Spec.Replicas != 1 || cfg.Sessions.Store != config.SessionStoreMemory {
		t.Errorf("one replica: replicas %d, sessions.store %q", *r.deployment.Spec.Replicas, cfg.Sessions.Store)
	}
}
