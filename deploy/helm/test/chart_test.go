package test

import (
	"fmt"
	"net"
	"os"
	"path"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	monitoringv1 "github.com/prometheus-operator/prometheus-operator/pkg/apis/monitoring/v1"
	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/apimachinery/pkg/util/intstr"
	"sigs.k8s.io/yaml"
)

// fileRef is where a file the gateway reads comes from.
type fileRef struct{ secret, configMap, key string }

// expect is what a value set must render to, beyond what every rendering
// must satisfy (checkRendering).
type expect struct {
	replicas *int32 // nil: the HorizontalPodAutoscaler owns it
	hpa      bool
	pdb      bool
	// pdbMin is the budget's minAvailable; 0 expects maxUnavailable 1.
	pdbMin         int
	headless       bool
	adminService   bool
	serviceMonitor bool
	serviceAccount string // the account the pods run as
	createAccount  bool
	image          string // "" for repository:appVersion of the defaults
	// files: flag -> source, for every file flag the gateway gets.
	files map[string]fileRef
	// sasl is the password Secret's name/key, "" without SASL.
	sasl string
	// flags the arguments must hold, with their values.
	flags map[string]string
	// absent are flags the arguments must not hold.
	absent     []string
	preStop    int64
	grace      int64 // terminationGracePeriodSeconds
	adminTLS   bool
	bearer     string // the ServiceMonitor's token Secret name/key
	podLabels  map[string]string
	antiAffine string // "soft", "hard" or ""
	zoneSpread corev1.UnsatisfiableConstraintAction
	// nodeAffinity: the values' own affinity, merged with the chart's.
	nodeAffinity bool
}

func ptr[T any](v T) *T { return &v }

// stopMargin is what the termination grace period must leave after the
// preStop sleep and --shutdown-grace: after the grace the gateway still
// closes its admin listener (up to 1 s), its Kafka clients and its fleet
// watch before it exits, and a SIGKILL meanwhile cuts that short.
const stopMargin = 10 * time.Second

func TestRender(t *testing.T) {
	flags := serveFlags(t)
	for _, tc := range []struct {
		file string
		want expect
	}{
		{"defaults.yaml", expect{
			replicas: ptr[int32](3), pdb: true, serviceAccount: "cg-confgate", createAccount: true,
			flags: map[string]string{
				"brokers": "kafka-0.kafka:9092,kafka-1.kafka:9092,kafka-2.kafka:9092", "topic": "config",
				"max-connection-age": "30m", "max-connection-age-grace": "30s", "output": "json", "log-level": "info",
			},
			absent:  []string{"fleet", "create-topic", "kafka-tls", "tls-cert", "auth-anonymous", "admin-tls"},
			preStop: 5, grace: 25, antiAffine: "soft", zoneSpread: corev1.ScheduleAnyway,
		}},
		{"production.yaml", expect{
			hpa: true, pdb: true, pdbMin: 2, serviceMonitor: true, adminService: true, serviceAccount: "cg-confgate", createAccount: true,
			image: "registry.example.com/confgate:v0.1.0@sha256:0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef",
			files: map[string]fileRef{
				"tls-cert":       {secret: "confgate-server-tls", key: "tls.crt"},
				"tls-key":        {secret: "confgate-server-tls", key: "tls.key"},
				"tls-client-ca":  {secret: "confgate-server-tls", key: "ca.crt"},
				"auth-tokens":    {secret: "confgate-tokens", key: "tokens"},
				"auth-jwks":      {configMap: "cluster-jwks", key: "jwks.json"},
				"acl":            {configMap: "confgate-acl", key: "acl.yaml"},
				"kafka-tls-ca":   {secret: "kafka-client-tls", key: "ca.crt"},
				"kafka-tls-cert": {secret: "kafka-client-tls", key: "tls.crt"},
				"kafka-tls-key":  {secret: "kafka-client-tls", key: "tls.key"},
			},
			sasl: "kafka-sasl/password",
			flags: map[string]string{
				"topic": "prod.config", "create-topic": "", "partitions": "12", "replication-factor": "3",
				"topic-config": "max.message.bytes=10485760,min.cleanable.dirty.ratio=0.1,min.insync.replicas=2,segment.ms=3600000", "kafka-tls": "",
				"kafka-tls-server-name": "kafka.example.com", "kafka-sasl-mechanism": "SCRAM-SHA-512", "kafka-sasl-user": "confgate",
				"auth-jwt-issuer": "https://kubernetes.default.svc.cluster.local", "auth-jwt-audience": "confgate",
				"auth-jwt-subject-prefix": "system:serviceaccount:", "auth-jwt-groups-claim": "groups", "auth-jwt-leeway": "1m", "auth-cert-names": "uri,dns",
				"auth-anonymous": "", "max-connection-age": "20m", "max-connection-age-grace": "45s",
				"history-bytes": "256MiB", "max-streams": "80000", "shutdown-grace": "20s",
			},
			absent:  []string{"admin-tls", "fleet"},
			preStop: 10, grace: 40, bearer: "confgate-scraper-token/token",
			podLabels: map[string]string{"team": "platform"}, antiAffine: "soft", zoneSpread: corev1.ScheduleAnyway,
		}},
		{"headless.yaml", expect{
			replicas: ptr[int32](5), pdb: true, headless: true, serviceAccount: "cg-confgate", createAccount: true,
			flags:   map[string]string{"brokers": "kafka.kafka.svc:9092"},
			preStop: 5, grace: 25, antiAffine: "hard", zoneSpread: corev1.DoNotSchedule, nodeAffinity: true,
		}},
		{"minimal.yaml", expect{
			replicas: ptr[int32](1), serviceAccount: "default",
			flags:   map[string]string{"fleet": "false", "shutdown-grace": "5s"},
			absent:  []string{"max-connection-age", "max-connection-age-grace"},
			preStop: 0, grace: 15,
		}},
		{"admin-tls.yaml", expect{
			replicas: ptr[int32](3), pdb: true, serviceMonitor: true, adminService: true, serviceAccount: "cg-confgate", createAccount: true,
			files: map[string]fileRef{
				"tls-cert":      {secret: "confgate-tls", key: "tls.crt"},
				"tls-key":       {secret: "confgate-tls", key: "tls.key"},
				"tls-client-ca": {configMap: "confgate-client-ca", key: "ca.crt"},
				"auth-tokens":   {configMap: "confgate-tokens", key: "tokens"},
			},
			flags:   map[string]string{"admin-tls": "", "kafka-tls": ""},
			absent:  []string{"kafka-tls-ca", "auth-anonymous"},
			preStop: 5, grace: 25, adminTLS: true, antiAffine: "soft", zoneSpread: corev1.ScheduleAnyway,
		}},
	} {
		t.Run(strings.TrimSuffix(tc.file, ".yaml"), func(t *testing.T) {
			out, err := helmTemplate(t, []string{filepath.Join(valuesDir, tc.file)})
			if err != nil {
				t.Fatal(err)
			}
			r, err := decode(out)
			if err != nil {
				t.Fatal(err)
			}
			checkRendering(t, r, tc.want, flags)
		})
	}
}

// checkRendering checks one rendering against what every rendering must
// satisfy and against want.
func checkRendering(t *testing.T, r *rendered, want expect, flags map[string]bool) {
	t.Helper()
	if len(r.deployments) != 1 {
		t.Fatalf("%d Deployments, want 1", len(r.deployments))
	}
	d := &r.deployments[0]
	pod := &d.Spec.Template.Spec
	podLabels := labels.Set(d.Spec.Template.Labels)
	if len(pod.Containers) != 1 || pod.Containers[0].Name != "confgate" {
		t.Fatalf("containers %v, want one named confgate", pod.Containers)
	}
	c := &pod.Containers[0]

	// The Deployment selects its own pods, and only this release's.
	sel, err := metav1.LabelSelectorAsSelector(d.Spec.Selector)
	if err != nil || sel.Empty() || !sel.Matches(podLabels) {
		t.Errorf("Deployment selector %v (%v) does not select its pod labels %v", d.Spec.Selector, err, podLabels)
	}
	if podLabels["app.kubernetes.io/instance"] != release || !slices.Contains(keys(d.Spec.Selector.MatchLabels), "app.kubernetes.io/instance") {
		t.Errorf("pods and selector must carry app.kubernetes.io/instance=%s: %v, %v", release, podLabels, d.Spec.Selector.MatchLabels)
	}
	for k, v := range want.podLabels {
		if podLabels[k] != v {
			t.Errorf("pod label %s=%q, want %q", k, podLabels[k], v)
		}
	}

	// Replicas: the HPA's when there is one, else the value's.
	switch {
	case want.replicas == nil && d.Spec.Replicas != nil:
		t.Errorf("replicas %d is set although the HPA owns the count", *d.Spec.Replicas)
	case want.replicas != nil && (d.Spec.Replicas == nil || *d.Spec.Replicas != *want.replicas):
		t.Errorf("replicas %v, want %d", d.Spec.Replicas, *want.replicas)
	}
	// A rollout never lowers capacity.
	if ru := d.Spec.Strategy.RollingUpdate; d.Spec.Strategy.Type != appsv1.RollingUpdateDeploymentStrategyType || ru == nil || ru.MaxUnavailable.IntValue() != 0 {
		t.Errorf("strategy %+v: want RollingUpdate with maxUnavailable 0", d.Spec.Strategy)
	}

	// Arguments: `serve` and real flags of it, one --flag[=value] token each.
	args := parseArgs(t, c, flags)
	for f, v := range want.flags {
		got, ok := args[f]
		if !ok {
			t.Errorf("--%s missing from the arguments", f)
		} else if got[len(got)-1] != v {
			t.Errorf("--%s=%q, want %q", f, got[len(got)-1], v)
		}
	}
	for _, f := range want.absent {
		if v, ok := args[f]; ok {
			t.Errorf("--%s=%v is in the arguments; it should not be", f, v)
		}
	}
	for _, f := range []string{"brokers", "topic", "listen", "admin-listen", "shutdown-grace"} {
		if len(args[f]) != 1 || args[f][0] == "" {
			t.Errorf("--%s: %v, want exactly one value", f, args[f])
		}
	}

	// Ports: the gateway listens on every address, on the container's ports.
	ports := map[string]int32{}
	for _, p := range c.Ports {
		ports[p.Name] = p.ContainerPort
	}
	for flag, name := range map[string]string{"listen": "grpc", "admin-listen": "admin"} {
		host, port := splitHostPort(t, first(args[flag]))
		if host != "" && host != "0.0.0.0" && host != "::" {
			t.Errorf("--%s=%s: the kubelet and Services reach the pod on its own address, not %s", flag, first(args[flag]), host)
		}
		if ports[name] == 0 || ports[name] != port {
			t.Errorf("--%s port %d, container port %q is %d", flag, port, name, ports[name])
		}
	}

	// Probes: ready on /readyz, alive on /healthz, on the admin port.
	scheme := corev1.URISchemeHTTP
	if want.adminTLS {
		scheme = corev1.URISchemeHTTPS
	}
	if _, on := args["admin-tls"]; on != want.adminTLS {
		t.Errorf("--admin-tls in the arguments: %v, want %v", on, want.adminTLS)
	}
	for name, p := range map[string]*corev1.Probe{"/readyz": c.ReadinessProbe, "/healthz": c.LivenessProbe} {
		switch {
		case p == nil || p.HTTPGet == nil:
			t.Errorf("no HTTP probe on %s", name)
		case p.HTTPGet.Path != name || resolvePort(c, p.HTTPGet.Port) != ports["admin"] || p.HTTPGet.Scheme != scheme:
			t.Errorf("probe %+v: want %s %s on the admin port %d", p.HTTPGet, scheme, name, ports["admin"])
		}
	}

	// The drain: preStop sleep, then SIGTERM and --shutdown-grace, and
	// stopMargin for the rest of the stop, all within the termination
	// grace period.
	var sleep int64
	if lc := c.Lifecycle; lc != nil && lc.PreStop != nil {
		if lc.PreStop.Sleep == nil || lc.PreStop.Exec != nil || lc.PreStop.HTTPGet != nil {
			t.Errorf("preStop %+v: want the sleep action (the image has no shell)", lc.PreStop)
		} else {
			sleep = lc.PreStop.Sleep.Seconds
		}
	}
	if sleep != want.preStop {
		t.Errorf("preStop sleep %ds, want %ds", sleep, want.preStop)
	}
	grace, err := time.ParseDuration(first(args["shutdown-grace"]))
	if err != nil {
		t.Errorf("--shutdown-grace: %v", err)
	}
	tgp := pod.TerminationGracePeriodSeconds
	if tgp == nil || time.Duration(*tgp)*time.Second < grace+time.Duration(sleep)*time.Second+stopMargin {
		t.Errorf("terminationGracePeriodSeconds %v < --shutdown-grace %s + preStop %ds + %s: gateways would be killed mid-stop", tgp, grace, sleep, stopMargin)
	} else if *tgp != want.grace {
		t.Errorf("terminationGracePeriodSeconds %d, want %d", *tgp, want.grace)
	}

	// Security.
	checkSecurity(t, pod, c)
	if pod.AutomountServiceAccountToken == nil || *pod.AutomountServiceAccountToken {
		t.Error("automountServiceAccountToken is not false: the gateway never calls the API")
	}
	if pod.EnableServiceLinks == nil || *pod.EnableServiceLinks {
		t.Error("enableServiceLinks is not false: Services would put CONFGATE_* variables in the environment")
	}
	if pod.ServiceAccountName != want.serviceAccount {
		t.Errorf("serviceAccountName %q, want %q", pod.ServiceAccountName, want.serviceAccount)
	}
	if got := len(r.serviceAccounts); (got == 1) != want.createAccount || got > 1 || (got == 1 && r.serviceAccounts[0].Name != want.serviceAccount) {
		t.Errorf("ServiceAccounts %v, want created %v as %q", r.serviceAccounts, want.createAccount, want.serviceAccount)
	}
	for _, sa := range r.serviceAccounts {
		if sa.AutomountServiceAccountToken == nil || *sa.AutomountServiceAccountToken {
			t.Errorf("ServiceAccount %s mounts its token", sa.Name)
		}
	}

	// Resources: requests for the scheduler, a memory limit above them.
	req := c.Resources.Requests
	if req.Cpu().IsZero() || req.Memory().IsZero() {
		t.Errorf("resource requests %v: want cpu and memory", req)
	}
	if lim := c.Resources.Limits.Memory(); !lim.IsZero() && lim.Cmp(*req.Memory()) < 0 {
		t.Errorf("memory limit %s below the request %s", lim, req.Memory())
	}

	// The image.
	wantImage := want.image
	if wantImage == "" {
		wantImage = "confgate/confgate:" + appVersion(t)
	}
	if c.Image != wantImage {
		t.Errorf("image %q, want %q", c.Image, wantImage)
	}

	// Files: every file flag points into a read-only mount of the Secret
	// or ConfigMap key the values name, and nothing else is mounted.
	checkFiles(t, pod, c, args, want.files)

	// SASL: the password from a Secret through the environment, never an
	// argument.
	var pw *corev1.EnvVar
	for i, e := range c.Env {
		if e.Name == "CONFGATE_KAFKA_SASL_PASSWORD" {
			pw = &c.Env[i]
		}
	}
	switch {
	case want.sasl == "" && pw != nil:
		t.Errorf("CONFGATE_KAFKA_SASL_PASSWORD set without SASL: %+v", pw)
	case want.sasl == "" && (args["kafka-sasl-mechanism"] != nil || args["kafka-sasl-user"] != nil):
		t.Error("SASL flags without SASL values")
	case want.sasl != "" && (pw == nil || pw.Value != "" || pw.ValueFrom == nil || pw.ValueFrom.SecretKeyRef == nil):
		t.Errorf("CONFGATE_KAFKA_SASL_PASSWORD %+v: want a secretKeyRef", pw)
	case want.sasl != "" && pw.ValueFrom.SecretKeyRef.Name+"/"+pw.ValueFrom.SecretKeyRef.Key != want.sasl:
		t.Errorf("CONFGATE_KAFKA_SASL_PASSWORD from %s/%s, want %s", pw.ValueFrom.SecretKeyRef.Name, pw.ValueFrom.SecretKeyRef.Key, want.sasl)
	}

	// Spreading, and that the spreading selects this release's gateways.
	checkSpread(t, pod, podLabels, want)

	// Services.
	checkServices(t, r, c, podLabels, want)

	// PodDisruptionBudget.
	if got := len(r.pdbs); got != map[bool]int{true: 1}[want.pdb] {
		t.Errorf("%d PodDisruptionBudgets, want pdb %v", got, want.pdb)
	}
	for _, p := range r.pdbs {
		s, err := metav1.LabelSelectorAsSelector(p.Spec.Selector)
		if err != nil || s.Empty() || !s.Matches(podLabels) {
			t.Errorf("PodDisruptionBudget selector %v (%v) does not select the pods %v", p.Spec.Selector, err, podLabels)
		}
		switch {
		case (p.Spec.MinAvailable == nil) == (p.Spec.MaxUnavailable == nil):
			t.Errorf("PodDisruptionBudget: want exactly one of minAvailable and maxUnavailable: %+v", p.Spec)
		case want.pdbMin == 0 && p.Spec.MaxUnavailable.String() != "1":
			t.Errorf("PodDisruptionBudget maxUnavailable %v, want 1", p.Spec.MaxUnavailable)
		case want.pdbMin != 0 && p.Spec.MinAvailable.String() != strconv.Itoa(want.pdbMin):
			t.Errorf("PodDisruptionBudget minAvailable %v, want %d", p.Spec.MinAvailable, want.pdbMin)
		}
	}

	// HorizontalPodAutoscaler: scales this Deployment, which then leaves
	// replicas unset.
	if got := len(r.hpas); got != map[bool]int{true: 1}[want.hpa] {
		t.Errorf("%d HorizontalPodAutoscalers, want hpa %v", got, want.hpa)
	}
	for _, h := range r.hpas {
		ref := h.Spec.ScaleTargetRef
		if ref.APIVersion != "apps/v1" || ref.Kind != "Deployment" || ref.Name != d.Name {
			t.Errorf("HPA scales %+v, want the Deployment %s", ref, d.Name)
		}
		if h.Spec.MinReplicas == nil || *h.Spec.MinReplicas > h.Spec.MaxReplicas || len(h.Spec.Metrics) == 0 {
			t.Errorf("HPA min %v max %d metrics %d", h.Spec.MinReplicas, h.Spec.MaxReplicas, len(h.Spec.Metrics))
		}
		if age, ok := args["max-connection-age"]; !ok || first(age) == "0" {
			t.Error("HPA without --max-connection-age: added gateways would get no existing streams")
		}
		if c.Resources.Requests.Cpu().IsZero() {
			t.Error("HPA on CPU utilization needs a CPU request")
		}
	}

	checkServiceMonitor(t, r, want, first(args["topic"]))
}

// parseArgs checks the container runs `confgate serve` with flags serve
// has, each one --flag or --flag=value token, and returns them by name.
func parseArgs(t *testing.T, c *corev1.Container, flags map[string]bool) map[string][]string {
	t.Helper()
	if len(c.Command) != 0 {
		t.Errorf("command %v: the image's entrypoint is confgate; the chart sets args only", c.Command)
	}
	if len(c.Args) == 0 || c.Args[0] != "serve" {
		t.Fatalf("args %v: want serve first", c.Args)
	}
	out := map[string][]string{}
	re := regexp.MustCompile(`^--([a-z0-9][a-z0-9-]*)(?:=(.*))?$`)
	for _, a := range c.Args[1:] {
		m := re.FindStringSubmatch(a)
		if m == nil {
			t.Errorf("argument %q is not one --flag or --flag=value token", a)
			continue
		}
		if !flags[m[1]] {
			t.Errorf("argument %q: confgate serve has no flag --%s", a, m[1])
		}
		out[m[1]] = append(out[m[1]], m[2])
	}
	for f, vs := range out {
		if len(vs) > 1 && f != "auth-jwt-audience" {
			t.Errorf("--%s given %d times: %v", f, len(vs), vs)
		}
	}
	return out
}

func checkSecurity(t *testing.T, pod *corev1.PodSpec, c *corev1.Container) {
	t.Helper()
	psc, sc := pod.SecurityContext, c.SecurityContext
	if sc == nil || psc == nil {
		t.Fatal("no securityContext on the pod or the container")
	}
	if !(isTrue(sc.RunAsNonRoot) || isTrue(psc.RunAsNonRoot)) {
		t.Error("runAsNonRoot is not true")
	}
	if uid := sc.RunAsUser; (uid != nil && *uid == 0) || (uid == nil && psc.RunAsUser != nil && *psc.RunAsUser == 0) {
		t.Error("runs as user 0")
	}
	if !isTrue(sc.ReadOnlyRootFilesystem) {
		t.Error("readOnlyRootFilesystem is not true")
	}
	if sc.AllowPrivilegeEscalation == nil || *sc.AllowPrivilegeEscalation {
		t.Error("allowPrivilegeEscalation is not false")
	}
	if isTrue(sc.Privileged) {
		t.Error("privileged")
	}
	if sc.Capabilities == nil || !slices.Contains(sc.Capabilities.Drop, "ALL") || len(sc.Capabilities.Add) > 0 {
		t.Errorf("capabilities %+v: want ALL dropped and none added", sc.Capabilities)
	}
	seccomp := sc.SeccompProfile
	if seccomp == nil {
		seccomp = psc.SeccompProfile
	}
	if seccomp == nil || seccomp.Type != corev1.SeccompProfileTypeRuntimeDefault {
		t.Errorf("seccompProfile %+v: want RuntimeDefault", seccomp)
	}
}

func checkFiles(t *testing.T, pod *corev1.PodSpec, c *corev1.Container, args map[string][]string, want map[string]fileRef) {
	t.Helper()
	volumes := map[string]*corev1.Volume{}
	for i, v := range pod.Volumes {
		volumes[v.Name] = &pod.Volumes[i]
	}
	mounted := map[string]bool{}
	for _, m := range c.VolumeMounts {
		if volumes[m.Name] == nil {
			t.Errorf("volumeMount %s: no such volume", m.Name)
		}
		if !m.ReadOnly {
			t.Errorf("volumeMount %s is not read-only", m.Name)
		}
		if m.SubPath != "" {
			t.Errorf("volumeMount %s uses subPath: the kubelet never updates it, so rotated files would not reach the gateway", m.Name)
		}
		mounted[m.Name] = true
	}
	for name := range volumes {
		if !mounted[name] {
			t.Errorf("volume %s is not mounted", name)
		}
	}
	got := map[string]fileRef{}
	for _, f := range []string{"tls-cert", "tls-key", "tls-client-ca", "auth-tokens", "auth-jwks", "acl", "kafka-tls-ca", "kafka-tls-cert", "kafka-tls-key"} {
		vs, ok := args[f]
		if !ok {
			continue
		}
		file := first(vs)
		var ref *fileRef
		for _, m := range c.VolumeMounts {
			if path.Dir(file) != path.Clean(m.MountPath) {
				continue
			}
			v := volumes[m.Name]
			if v == nil {
				break
			}
			var items []corev1.KeyToPath
			r := fileRef{}
			switch {
			case v.Secret != nil:
				r.secret, items = v.Secret.SecretName, v.Secret.Items
				checkMode(t, v.Name, v.Secret.DefaultMode)
			case v.ConfigMap != nil:
				r.configMap, items = v.ConfigMap.Name, v.ConfigMap.Items
				checkMode(t, v.Name, v.ConfigMap.DefaultMode)
			}
			for _, it := range items {
				if it.Path == path.Base(file) {
					r.key = it.Key
					ref = &r
				}
			}
		}
		if ref == nil {
			t.Errorf("--%s=%s: no mounted Secret or ConfigMap item provides that file", f, file)
			continue
		}
		got[f] = *ref
	}
	if len(got) != len(want) {
		t.Errorf("files %v, want %v", got, want)
	}
	for f, w := range want {
		if got[f] != w {
			t.Errorf("--%s comes from %+v, want %+v", f, got[f], w)
		}
	}
}

// checkMode: the files are readable by the gateway's user whatever group
// it runs as, and writable by nobody.
func checkMode(t *testing.T, volume string, mode *int32) {
	t.Helper()
	if mode == nil || *mode&0o444 != 0o444 || *mode&0o222 != 0 {
		t.Errorf("volume %s defaultMode %v: want read-only, readable by all", volume, mode)
	}
}

func checkSpread(t *testing.T, pod *corev1.PodSpec, podLabels labels.Set, want expect) {
	t.Helper()
	var anti string
	if a := pod.Affinity; a != nil && a.PodAntiAffinity != nil {
		pa := a.PodAntiAffinity
		var terms []corev1.PodAffinityTerm
		for _, w := range pa.PreferredDuringSchedulingIgnoredDuringExecution {
			terms = append(terms, w.PodAffinityTerm)
			anti = "soft"
		}
		if len(pa.RequiredDuringSchedulingIgnoredDuringExecution) > 0 {
			terms = append(terms, pa.RequiredDuringSchedulingIgnoredDuringExecution...)
			anti = "hard"
		}
		for _, term := range terms {
			s, err := metav1.LabelSelectorAsSelector(term.LabelSelector)
			if err != nil || s.Empty() || !s.Matches(podLabels) || term.TopologyKey != corev1.LabelHostname {
				t.Errorf("anti-affinity term %+v does not keep the gateways apart per node", term)
			}
		}
	}
	if anti != want.antiAffine {
		t.Errorf("pod anti-affinity %q, want %q", anti, want.antiAffine)
	}
	var zone corev1.UnsatisfiableConstraintAction
	for _, c := range pod.TopologySpreadConstraints {
		s, err := metav1.LabelSelectorAsSelector(c.LabelSelector)
		if err != nil || s.Empty() || !s.Matches(podLabels) {
			t.Errorf("topology spread %+v does not select the gateways", c)
		}
		if c.TopologyKey == corev1.LabelTopologyZone {
			zone = c.WhenUnsatisfiable
		}
	}
	if zone != want.zoneSpread {
		t.Errorf("zone spread %q, want %q", zone, want.zoneSpread)
	}
	if got := pod.Affinity != nil && pod.Affinity.NodeAffinity != nil; got != want.nodeAffinity {
		t.Errorf("nodeAffinity present: %v, want %v (the values' affinity merged with the anti-affinity)", got, want.nodeAffinity)
	}
}

func checkServices(t *testing.T, r *rendered, c *corev1.Container, podLabels labels.Set, want expect) {
	t.Helper()
	byName := map[string]*corev1.Service{}
	for i, s := range r.services {
		byName[s.Name] = &r.services[i]
		sel := labels.SelectorFromSet(s.Spec.Selector)
		if len(s.Spec.Selector) == 0 || !sel.Matches(podLabels) {
			t.Errorf("Service %s selector %v does not select the gateways %v", s.Name, s.Spec.Selector, podLabels)
		}
		for _, p := range s.Spec.Ports {
			if p.TargetPort.Type != intstr.String || resolvePort(c, p.TargetPort) == 0 {
				t.Errorf("Service %s port %s targets %s, not a named container port", s.Name, p.Name, p.TargetPort.String())
			}
		}
	}
	const full = release + "-confgate"
	wantNames := []string{full}
	if want.headless {
		wantNames = append(wantNames, full+"-headless")
	}
	if want.adminService {
		wantNames = append(wantNames, full+"-admin")
	}
	if got := keys(byName); !sameSet(got, wantNames) {
		t.Errorf("Services %v, want %v", got, wantNames)
	}
	if s := byName[full]; s != nil {
		if s.Spec.ClusterIP == corev1.ClusterIPNone || len(s.Spec.Ports) != 1 || s.Spec.Ports[0].TargetPort.StrVal != "grpc" {
			t.Errorf("Service %s: want a virtual IP and the grpc port only (the admin endpoints are not for clients): %+v", s.Name, s.Spec)
		}
	}
	if s := byName[full+"-headless"]; s != nil {
		if s.Spec.ClusterIP != corev1.ClusterIPNone || s.Spec.PublishNotReadyAddresses || s.Spec.Ports[0].TargetPort.StrVal != "grpc" {
			t.Errorf("headless Service %s: want clusterIP None, only ready gateways, the grpc port: %+v", s.Name, s.Spec)
		}
	}
	if s := byName[full+"-admin"]; s != nil {
		if s.Spec.ClusterIP != corev1.ClusterIPNone || len(s.Spec.Ports) != 1 || s.Spec.Ports[0].Name != "admin" || s.Spec.Ports[0].TargetPort.StrVal != "admin" {
			t.Errorf("admin Service %s: want headless with the admin port only: %+v", s.Name, s.Spec)
		}
	}
}

func checkServiceMonitor(t *testing.T, r *rendered, want expect, topic string) {
	t.Helper()
	if got := len(r.serviceMonitors); got != map[bool]int{true: 1}[want.serviceMonitor] {
		t.Fatalf("%d ServiceMonitors, want serviceMonitor %v", got, want.serviceMonitor)
	}
	for _, sm := range r.serviceMonitors {
		sel, err := metav1.LabelSelectorAsSelector(&sm.Spec.Selector)
		if err != nil || sel.Empty() {
			t.Fatalf("ServiceMonitor selector %v: %v", sm.Spec.Selector, err)
		}
		var selected []corev1.Service
		for _, s := range r.services {
			if sel.Matches(labels.Set(s.Labels)) {
				selected = append(selected, s)
			}
		}
		if len(selected) != 1 || selected[0].Name != release+"-confgate-admin" {
			t.Errorf("ServiceMonitor selects %d Services, want the admin Service alone", len(selected))
			continue
		}
		if !slices.Contains(sm.Spec.NamespaceSelector.MatchNames, namespace) {
			t.Errorf("ServiceMonitor namespaceSelector %+v misses the release namespace %s", sm.Spec.NamespaceSelector, namespace)
		}
		if len(sm.Spec.Endpoints) != 1 {
			t.Fatalf("ServiceMonitor endpoints %d, want 1", len(sm.Spec.Endpoints))
		}
		ep := sm.Spec.Endpoints[0]
		if ep.Port != selected[0].Spec.Ports[0].Name || ep.Path != "/metrics" {
			t.Errorf("ServiceMonitor endpoint port %q path %q: want the admin Service's port %q, /metrics", ep.Port, ep.Path, selected[0].Spec.Ports[0].Name)
		}
		scheme := monitoringv1.SchemeHTTP
		if want.adminTLS {
			scheme = monitoringv1.SchemeHTTPS
		}
		if ep.Scheme == nil || *ep.Scheme != scheme {
			t.Errorf("ServiceMonitor scheme %v, want %s", ep.Scheme, scheme)
		}
		switch a := ep.Authorization; {
		case want.bearer == "" && a != nil:
			t.Errorf("ServiceMonitor authorization %+v, want none", a)
		case want.bearer != "" && (a == nil || a.Credentials == nil || a.Type != "Bearer" || a.Credentials.Name+"/"+a.Credentials.Key != want.bearer):
			t.Errorf("ServiceMonitor authorization %+v, want a Bearer token from %s", a, want.bearer)
		case a != nil && a.Validate() != nil:
			t.Errorf("ServiceMonitor authorization: %v", a.Validate())
		}
		// Over HTTPS the scrape needs its TLS settings (else the system
		// CAs judge the gateways' certificate); over HTTP Prometheus
		// ignores them, client certificate included.
		switch {
		case want.adminTLS && ep.TLSConfig == nil:
			t.Error("ServiceMonitor over HTTPS without tlsConfig")
		case !want.adminTLS && ep.TLSConfig != nil:
			t.Errorf("ServiceMonitor over HTTP with tlsConfig %+v, which Prometheus ignores", ep.TLSConfig)
		case ep.TLSConfig != nil && ep.TLSConfig.Validate() != nil:
			t.Errorf("ServiceMonitor tlsConfig: %v", ep.TLSConfig.Validate())
		}
		// The dashboard and alerts filter by topic, which the scrape adds.
		if rl := ep.RelabelConfigs; len(rl) == 0 || rl[0].TargetLabel != "topic" || rl[0].Replacement == nil || *rl[0].Replacement != topic {
			t.Errorf("ServiceMonitor relabelings %+v: want the first to set topic=%q", rl, topic)
		}
	}
}

// TestKubeVersion: the chart renders on the oldest Kubernetes it claims
// (the preStop sleep action is on by default from 1.30) and refuses older.
func TestKubeVersion(t *testing.T) {
	values := []string{filepath.Join(valuesDir, "production.yaml")}
	out, err := helmTemplate(t, values, "--kube-version", "1.30.0")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := decode(out); err != nil {
		t.Fatal(err)
	}
	_, err = helmTemplate(t, values, "--kube-version", "1.29.9")
	if err == nil || !strings.Contains(err.Error(), "chart requires kubeVersion: >=1.30.0-0") {
		t.Fatalf("rendering for Kubernetes 1.29: %v, want the chart's kubeVersion refused", err)
	}
}

// TestBadValues: values that would not work fail `helm template` with a
// message that says what to change (the chart's own checks), or are
// refused by values.schema.json.
func TestBadValues(t *testing.T) {
	// Each case's values go on top of defaults.yaml (brokers and topic).
	defaults := filepath.Join(valuesDir, "defaults.yaml")
	for _, tc := range []struct {
		name, values, want string
	}{
		{"no brokers", "kafka: {brokers: []}", "kafka.brokers is required"},
		{"no topic", "kafka: {topic: \"\"}", "kafka.topic is required"},
		{"replicas and HPA", "replicaCount: 4\nautoscaling: {enabled: true}", "replicaCount and autoscaling.enabled are both set"},
		{"HPA without connection age", "autoscaling: {enabled: true}\ngateway: {maxConnectionAge: \"0\"}", "autoscaling.enabled needs gateway.maxConnectionAge"},
		{"HPA min above max", "autoscaling: {enabled: true, minReplicas: 5, maxReplicas: 3}", "autoscaling.minReplicas (5) is above autoscaling.maxReplicas (3)"},
		{"PDB neither", "podDisruptionBudget: {maxUnavailable: null}", "needs minAvailable or maxUnavailable"},
		{"grace too short", "drain: {preStopSleepSeconds: 5, shutdownGraceSeconds: 10, terminationGracePeriodSeconds: 12}", "drain.terminationGracePeriodSeconds (12) is below"},
		{"grace without the margin", "drain: {preStopSleepSeconds: 5, shutdownGraceSeconds: 10, terminationGracePeriodSeconds: 15}", "drain.terminationGracePeriodSeconds (15) is below drain.preStopSleepSeconds + drain.shutdownGraceSeconds + 10 (25)"},
		{"grace a second short of the margin", "drain: {preStopSleepSeconds: 0, shutdownGraceSeconds: 5, terminationGracePeriodSeconds: 14}", "drain.terminationGracePeriodSeconds (14) is below"},
		{"bad digest", "image: {digest: sha256:abc}", "image.digest"},
		{"SASL without password", "kafka: {sasl: {mechanism: PLAIN, user: u}}", "kafka.sasl.mechanism needs kafka.sasl.passwordSecret.name"},
		{"SASL without user", "kafka: {sasl: {mechanism: PLAIN, passwordSecret: {name: s}}}", "kafka.sasl.mechanism needs kafka.sasl.user"},
		{"SASL user alone", "kafka: {sasl: {user: u}}", "kafka.sasl.user needs kafka.sasl.mechanism"},
		{"SASL unknown mechanism", "kafka: {sasl: {mechanism: GSSAPI, user: u, passwordSecret: {name: s}}}", "/kafka/sasl/mechanism"},
		{"Kafka cert without key", "kafka: {tls: {secret: {name: s, certKey: tls.crt}}}", "kafka.tls.secret.certKey and kafka.tls.secret.keyKey go together"},
		{"file from both", "auth: {acl: {secret: a, configMap: b}}", "auth.acl: set secret or configMap, not both"},
		{"client CA without TLS", "tls: {clientCA: {secret: ca}}", "tls.clientCA needs tls.secretName"},
		{"admin TLS without TLS", "tls: {adminTLS: true}", "tls.adminTLS needs tls.secretName"},
		{"admin TLS with required client certs", "tls: {secretName: t, adminTLS: true, clientCA: {secret: ca}}", "the kubelet's probes present none"},
		{"JWKS without issuer", "auth: {jwks: {configMap: j}, jwt: {audiences: [confgate]}}", "auth.jwks needs auth.jwt.issuer"},
		{"JWKS without audience", "auth: {jwks: {configMap: j}, jwt: {issuer: i}}", "auth.jwks needs auth.jwt.audiences"},
		{"JWT settings without JWKS", "auth: {jwt: {issuer: i}}", "auth.jwt settings need auth.jwks"},
		{"cert names without client CA", "auth: {certNames: [uri]}", "auth.certNames needs tls.clientCA"},
		{"anonymous alone", "auth: {anonymous: true}", "auth.anonymous needs a credential"},
		{"scrape without credential", "auth: {tokens: {secret: t}}\nserviceMonitor: {enabled: true}", "/metrics needs a credential"},
		{"scrape TLS without a client certificate", "tls: {secretName: t, adminTLS: true}\nauth: {tokens: {secret: t}}\nserviceMonitor: {enabled: true, tlsConfig: {ca: {secret: {name: t, key: ca.crt}}}}", "/metrics needs a credential"},
		{"scrape certificate over HTTP", "tls: {secretName: t, clientCA: {secret: ca}}\nauth: {tokens: {secret: t}}\nserviceMonitor: {enabled: true, tlsConfig: " + scrapeCert + "}", "serviceMonitor.tlsConfig needs tls.adminTLS"},
		{"scrape TLS settings over HTTP", "serviceMonitor: {enabled: true, tlsConfig: {insecureSkipVerify: true}}", "serviceMonitor.tlsConfig needs tls.adminTLS"},
		{"HTTPS scrape without TLS settings", "tls: {secretName: t, adminTLS: true}\nserviceMonitor: {enabled: true}", "tls.adminTLS with serviceMonitor.enabled needs serviceMonitor.tlsConfig"},
		{"HTTPS scrape with a bearer token but no TLS settings", "tls: {secretName: t, adminTLS: true}\nauth: {tokens: {secret: t}}\nserviceMonitor: {enabled: true, authorization: {secret: {name: s}}}", "needs serviceMonitor.tlsConfig"},
		{"scrape certificate nobody asks for", "tls: {secretName: t, adminTLS: true}\nauth: {tokens: {secret: t}}\nserviceMonitor: {enabled: true, tlsConfig: " + scrapeCert + "}", "needs tls.clientCA"},
		{"scrape certificate without key", "tls: {secretName: t, adminTLS: true, clientCA: {secret: ca}}\nauth: {tokens: {secret: t}}\nserviceMonitor: {enabled: true, tlsConfig: {cert: {secret: {name: s, key: tls.crt}}}}", "serviceMonitor.tlsConfig: a client certificate (cert or certFile) and its key (keySecret or keyFile) go together"},
		{"extra arg not a flag", "gateway: {extraArgs: [history-bytes]}", `"history-bytes" is not one --flag`},
		{"extra arg in two tokens", "gateway: {extraArgs: [--history-bytes, 1GiB]}", `"1GiB" is not one --flag`},
		{"extra arg the chart sets", "gateway: {extraArgs: [--topic=other]}", "--topic is set by the chart"},
		{"extra arg print-config", "gateway: {extraArgs: [--print-config]}", "gateway.extraArgs: --print-config makes serve print and exit"},
		{"extra arg help", "gateway: {extraArgs: [--help]}", "gateway.extraArgs: --help makes serve print and exit"},
		{"extra arg config", "gateway: {extraArgs: [--config=/etc/confgate.yaml]}", "gateway.extraArgs: --config"},
		{"env the chart sets as a flag", "env: [{name: CONFGATE_TOPIC, value: other}]", "env: CONFGATE_TOPIC sets --topic, which the chart sets"},
		{"env the chart may set as a flag", "env: [{name: CONFGATE_FLEET, value: \"false\"}]", "env: CONFGATE_FLEET sets --fleet, which the chart sets"},
		{"env an extra arg sets", "gateway: {extraArgs: [--history-bytes=1GiB]}\nenv: [{name: CONFGATE_HISTORY_BYTES, value: 2GiB}]", "env: CONFGATE_HISTORY_BYTES sets --history-bytes, which gateway.extraArgs passes"},
		{"env config file", "env: [{name: CONFGATE_CONFIG, value: /etc/c.yaml}]", "env: CONFGATE_CONFIG"},
		{"env print-config", "env: [{name: CONFGATE_PRINT_CONFIG, value: \"true\"}]", "env: CONFGATE_PRINT_CONFIG"},
		{"env SASL password twice", "kafka: {sasl: {mechanism: PLAIN, user: u, passwordSecret: {name: s}}}\nenv: [{name: CONFGATE_KAFKA_SASL_PASSWORD, value: p}]", "env: CONFGATE_KAFKA_SASL_PASSWORD is set by the chart from kafka.sasl.passwordSecret"},
		{"env GOMEMLIMIT twice", "goMemLimit: 900MiB\nenv: [{name: GOMEMLIMIT, value: 1GiB}]", "env: GOMEMLIMIT is set by the chart from goMemLimit"},
		{"env without a name", "env: [{value: x}]", "/env/0"},
		{"topic config with a quote", "kafka: {topicConfig: {compression.type: 'zs\"td'}}", `kafka.topicConfig.compression.type: a value holding " or a line break`},
		{"topic config with a line break", "kafka: {topicConfig: {compression.type: \"zs\\ntd\"}}", `kafka.topicConfig.compression.type: a value holding " or a line break`},
		{"topic config beyond float precision", "kafka: {topicConfig: {retention.ms: 9223372036854775807}}", "kafka.topicConfig.retention.ms: 9.223372036854776e+18 is too large for a YAML number to hold exactly (helm reads it as a float); write it as a string"},
		{"topic config key with =", "kafka: {topicConfig: {\"a=b\": x}}", "invalid propertyName 'a=b'"},
		{"topic config key with a comma", "kafka: {topicConfig: {\"a,b\": x}}", "invalid propertyName 'a,b'"},
		{"misspelt key", "kafka: {brokerz: [x:1]}", "additional properties 'brokerz' not allowed"},
		{"bad duration", "gateway: {maxConnectionAge: 5x}", "/gateway/maxConnectionAge"},
		{"broker without port", "kafka: {brokers: [kafka]}", "/kafka/brokers/0"},
		{"bad spread", "zoneSpread: always", "/zoneSpread"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := helmTemplate(t, []string{defaults, valuesFile(t, tc.values)})
			if err == nil {
				t.Fatalf("helm template succeeded with\n%s\nwant an error containing %q", tc.values, tc.want)
			}
			if !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("error %v\nwant it to contain %q", err, tc.want)
			}
		})
	}
}

// scrapeCert is a ServiceMonitor tlsConfig with a client certificate.
const scrapeCert = "{ca: {secret: {name: t, key: ca.crt}}, cert: {secret: {name: s, key: tls.crt}}, keySecret: {name: s, key: tls.key}}"

// TestChartFlagsAreNotExtraArgs: every flag the chart sets from its own
// values is refused in gateway.extraArgs (a second --brokers would add to
// the list, a second --topic would silently win) and as its variable in
// env (the flag would silently beat it, or the variable would override
// the chart's value where the chart passes no flag), so the chart's list
// of the flags it sets stays complete.
func TestChartFlagsAreNotExtraArgs(t *testing.T) {
	// Between them, these two renderings set every flag the chart sets.
	all := map[string]bool{}
	for _, values := range [][]string{
		{filepath.Join(valuesDir, "production.yaml"), valuesFile(t, "gateway: {extraArgs: []}\ntls: {adminTLS: true}\nserviceMonitor: {tlsConfig: {ca: {secret: {name: ca, key: ca.crt}}}}")},
		{filepath.Join(valuesDir, "minimal.yaml")},
	} {
		out, err := helmTemplate(t, values)
		if err != nil {
			t.Fatal(err)
		}
		r, err := decode(out)
		if err != nil {
			t.Fatal(err)
		}
		for flag := range parseArgs(t, &r.deployments[0].Spec.Template.Spec.Containers[0], serveFlags(t)) {
			all[flag] = true
		}
	}
	for _, flag := range keys(all) {
		_, err := helmTemplate(t, []string{filepath.Join(valuesDir, "defaults.yaml"), valuesFile(t, fmt.Sprintf("gateway: {extraArgs: [--%s=x]}", flag))})
		if err == nil || !strings.Contains(err.Error(), "--"+flag+" is set by the chart") {
			t.Errorf("extraArgs [--%s=x]: %v, want it refused as a flag the chart sets", flag, err)
		}
		env := "CONFGATE_" + strings.ToUpper(strings.ReplaceAll(flag, "-", "_"))
		_, err = helmTemplate(t, []string{filepath.Join(valuesDir, "defaults.yaml"), valuesFile(t, fmt.Sprintf("env: [{name: %s, value: x}]", env))})
		if err == nil || !strings.Contains(err.Error(), "env: "+env+" sets --"+flag+", which the chart sets") {
			t.Errorf("env %s: %v, want it refused as the variable of a flag the chart sets", env, err)
		}
	}
}

// TestValuesDocumented: every value of the chart is in values.yaml and in
// docs/deploy.md's table, so neither drifts from values.schema.json.
func TestValuesDocumented(t *testing.T) {
	schemaJSON, err := os.ReadFile(filepath.Join(chartDir, "values.schema.json"))
	if err != nil {
		t.Fatal(err)
	}
	var schema map[string]any
	if err := yaml.Unmarshal(schemaJSON, &schema); err != nil {
		t.Fatal(err)
	}
	valuesYAML, err := os.ReadFile(filepath.Join(chartDir, "values.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	var values map[string]any
	if err := yaml.Unmarshal(valuesYAML, &values); err != nil {
		t.Fatal(err)
	}
	doc, err := os.ReadFile(filepath.Join(repoRoot, "docs", "deploy.md"))
	if err != nil {
		t.Fatal(err)
	}
	var leaves []string
	var walk func(prefix string, s map[string]any)
	walk = func(prefix string, s map[string]any) {
		props, _ := s["properties"].(map[string]any)
		for k, v := range props {
			sub, _ := v.(map[string]any)
			if _, nested := sub["properties"]; nested {
				walk(prefix+k+".", sub)
				continue
			}
			leaves = append(leaves, prefix+k)
		}
	}
	walk("", schema)
	slices.Sort(leaves)
	for _, leaf := range leaves {
		if leaf == "global" {
			continue // helm's own, for subcharts
		}
		if _, ok := lookup(values, leaf); !ok {
			t.Errorf("%s is in values.schema.json but not in values.yaml", leaf)
		}
		if !strings.Contains(string(doc), "`"+leaf+"`") {
			t.Errorf("%s is not in docs/deploy.md's values table", leaf)
		}
	}
}

// lookup finds a dotted path in nested maps; a present null counts.
func lookup(m map[string]any, p string) (any, bool) {
	head, rest, nested := strings.Cut(p, ".")
	v, ok := m[head]
	if !ok || !nested {
		return v, ok
	}
	sub, ok := v.(map[string]any)
	if !ok {
		return nil, false
	}
	return lookup(sub, rest)
}

func appVersion(t *testing.T) string {
	t.Helper()
	b, err := os.ReadFile(filepath.Join(chartDir, "Chart.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	var chart struct {
		AppVersion string `json:"appVersion"`
	}
	if err := yaml.Unmarshal(b, &chart); err != nil || chart.AppVersion == "" {
		t.Fatalf("Chart.yaml appVersion: %q, %v", chart.AppVersion, err)
	}
	return chart.AppVersion
}

// resolvePort is the container port a probe or Service port names.
func resolvePort(c *corev1.Container, p intstr.IntOrString) int32 {
	if p.Type == intstr.Int {
		return p.IntVal
	}
	for _, cp := range c.Ports {
		if cp.Name == p.StrVal {
			return cp.ContainerPort
		}
	}
	return 0
}

func splitHostPort(t *testing.T, hostport string) (string, int32) {
	t.Helper()
	host, port, err := net.SplitHostPort(hostport)
	if err != nil {
		t.Errorf("%q: %v", hostport, err)
		return "", 0
	}
	n, err := strconv.ParseInt(port, 10, 32)
	if err != nil {
		t.Errorf("%q: %v", hostport, err)
	}
	return host, int32(n)
}

func first(vs []string) string {
	if len(vs) == 0 {
		return ""
	}
	return vs[0]
}

func isTrue(b *bool) bool { return b != nil && *b }

func keys[V any](m map[string]V) []string {
	out := make([]string, 0, len(m))
	for k := range m {
		out = append(out, k)
	}
	slices.Sort(out)
	return out
}

func sameSet(a, b []string) bool {
	a, b = slices.Clone(a), slices.Clone(b)
	slices.Sort(a)
	slices.Sort(b)
	return slices.Equal(a, b)
}
