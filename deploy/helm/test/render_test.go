package test

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"testing"

	monitoringv1 "github.com/prometheus-operator/prometheus-operator/pkg/apis/monitoring/v1"
	appsv1 "k8s.io/api/apps/v1"
	autoscalingv2 "k8s.io/api/autoscaling/v2"
	corev1 "k8s.io/api/core/v1"
	policyv1 "k8s.io/api/policy/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	metavalidation "k8s.io/apimachinery/pkg/apis/meta/v1/validation"
	"k8s.io/apimachinery/pkg/util/validation"
	"k8s.io/apimachinery/pkg/util/validation/field"
	k8syaml "k8s.io/apimachinery/pkg/util/yaml"
	sigsjson "sigs.k8s.io/json"
	"sigs.k8s.io/yaml"
)

const (
	chartDir  = "../confgate"
	valuesDir = "testdata/values"
	repoRoot  = "../../.."
	release   = "cg"
	namespace = "config"
)

// helmPath is the helm to run: $CONFGATE_HELM (scripts/deploy-test.sh
// installs the pinned one), else helm on PATH. Without one the tests fail:
// a chart test that skips proves nothing.
func helmPath(t *testing.T) string {
	t.Helper()
	if p := os.Getenv("CONFGATE_HELM"); p != "" {
		return p
	}
	p, err := exec.LookPath("helm")
	if err != nil {
		t.Fatal("no helm: run scripts/deploy-test.sh, which installs the pinned one, or set CONFGATE_HELM")
	}
	return p
}

// helmTemplate renders the chart as `helm template` does, in namespace,
// with the values files and extra arguments given. It returns helm's
// output, and its stderr as the error when it fails.
func helmTemplate(t *testing.T, values []string, extra ...string) ([]byte, error) {
	t.Helper()
	args := []string{"template", release, chartDir, "--namespace", namespace}
	for _, v := range values {
		args = append(args, "--values", v)
	}
	return helmRun(t, append(args, extra...)...)
}

// helmRun runs helm with args and returns its output, and its stderr as
// the error when it fails.
func helmRun(t *testing.T, args ...string) ([]byte, error) {
	t.Helper()
	cmd := exec.Command(helmPath(t), args...)
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	if err := cmd.Run(); err != nil {
		return nil, fmt.Errorf("helm %s: %v: %s", strings.Join(args, " "), err, stderr.String())
	}
	return stdout.Bytes(), nil
}

// valuesFile writes values (YAML) to a file of its own and returns its path.
func valuesFile(t *testing.T, values string) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), "values.yaml")
	if err := os.WriteFile(p, []byte(values), 0o644); err != nil {
		t.Fatal(err)
	}
	return p
}

var (
	binOnce sync.Once
	binPath string
	binErr  error
	binDir  string // a directory of our own for a built binary, removed by TestMain

	flagsOnce sync.Once
	flags     map[string]bool
	flagsErr  error
	flagRe    = regexp.MustCompile(`(?m)^\s+(?:-[a-zA-Z], )?--([a-z0-9][a-z0-9-]*)`)
)

func TestMain(m *testing.M) {
	code := m.Run()
	if binDir != "" {
		os.RemoveAll(binDir)
	}
	os.Exit(code)
}

// confgateBin is the confgate binary the tests ask about its flags: the
// one in $CONFGATE_BIN, or one built from this repository.
func confgateBin(t *testing.T) string {
	t.Helper()
	binOnce.Do(func() {
		if binPath = os.Getenv("CONFGATE_BIN"); binPath != "" {
			return
		}
		if binDir, binErr = os.MkdirTemp("", "confgate-chart-test"); binErr != nil {
			return
		}
		binPath = filepath.Join(binDir, "confgate")
		build := exec.Command("go", "build", "-o", binPath, "./cmd/confgate")
		build.Dir = repoRoot
		if out, err := build.CombinedOutput(); err != nil {
			binErr = fmt.Errorf("go build ./cmd/confgate: %v\n%s", err, out)
		}
	})
	if binErr != nil {
		t.Fatal(binErr)
	}
	return binPath
}

// confgateCmd runs confgate with args and without any CONFGATE_ variable
// of the test's own environment (CONFGATE_BIN, CONFGATE_HELM), which serve
// must not mistake for settings; it returns the standard output.
func confgateCmd(t *testing.T, args ...string) ([]byte, error) {
	t.Helper()
	cmd := exec.Command(confgateBin(t), args...)
	for _, e := range os.Environ() {
		if !strings.HasPrefix(e, "CONFGATE_") {
			cmd.Env = append(cmd.Env, e)
		}
	}
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		return nil, fmt.Errorf("confgate %s: %v: %s", strings.Join(args, " "), err, stderr.String())
	}
	return out, nil
}

// serveFlags are the flags `confgate serve` accepts, its own and the
// global ones, read from its --help.
func serveFlags(t *testing.T) map[string]bool {
	t.Helper()
	confgateBin(t) // fails the test here, not inside the Once
	flagsOnce.Do(func() {
		out, err := confgateCmd(t, "serve", "--help")
		if err != nil {
			flagsErr = err
			return
		}
		flags = map[string]bool{}
		for _, m := range flagRe.FindAllStringSubmatch(string(out), -1) {
			flags[m[1]] = true
		}
		// A sanity check of the parsing: flags every gateway needs.
		for _, f := range []string{"brokers", "topic", "listen", "admin-listen", "shutdown-grace", "output"} {
			if !flags[f] {
				flagsErr = fmt.Errorf("--%s not found in serve --help: the help's format changed?\n%s", f, out)
			}
		}
	})
	if flagsErr != nil {
		t.Fatal(flagsErr)
	}
	return flags
}

// rendered are the objects of one rendering, by kind.
type rendered struct {
	deployments     []appsv1.Deployment
	services        []corev1.Service
	serviceAccounts []corev1.ServiceAccount
	pdbs            []policyv1.PodDisruptionBudget
	hpas            []autoscalingv2.HorizontalPodAutoscaler
	serviceMonitors []monitoringv1.ServiceMonitor
}

// decode splits helm's output into documents and decodes each strictly
// into the API type of its apiVersion and kind, as the API server's
// strict field validation would: an unknown field, a duplicate field, a
// field of the wrong type or an unknown kind is an error. Names and labels
// are checked against the API's rules.
func decode(out []byte) (*rendered, error) {
	r := &rendered{}
	rd := k8syaml.NewYAMLReader(bufio.NewReader(bytes.NewReader(out)))
	for n := 1; ; n++ {
		doc, err := rd.Read()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			return nil, fmt.Errorf("document %d: %w", n, err)
		}
		js, err := yaml.YAMLToJSONStrict(doc)
		if err != nil {
			return nil, fmt.Errorf("document %d: %w\n%s", n, err, doc)
		}
		if bytes.Equal(bytes.TrimSpace(js), []byte("null")) {
			continue // only comments
		}
		var tm metav1.TypeMeta
		if err := sigsjson.UnmarshalCaseSensitivePreserveInts(js, &tm); err != nil {
			return nil, fmt.Errorf("document %d: %w", n, err)
		}
		var obj any
		switch tm.APIVersion + " " + tm.Kind {
		case "apps/v1 Deployment":
			r.deployments = append(r.deployments, appsv1.Deployment{})
			obj = &r.deployments[len(r.deployments)-1]
		case "v1 Service":
			r.services = append(r.services, corev1.Service{})
			obj = &r.services[len(r.services)-1]
		case "v1 ServiceAccount":
			r.serviceAccounts = append(r.serviceAccounts, corev1.ServiceAccount{})
			obj = &r.serviceAccounts[len(r.serviceAccounts)-1]
		case "policy/v1 PodDisruptionBudget":
			r.pdbs = append(r.pdbs, policyv1.PodDisruptionBudget{})
			obj = &r.pdbs[len(r.pdbs)-1]
		case "autoscaling/v2 HorizontalPodAutoscaler":
			r.hpas = append(r.hpas, autoscalingv2.HorizontalPodAutoscaler{})
			obj = &r.hpas[len(r.hpas)-1]
		case "monitoring.coreos.com/v1 ServiceMonitor":
			r.serviceMonitors = append(r.serviceMonitors, monitoringv1.ServiceMonitor{})
			obj = &r.serviceMonitors[len(r.serviceMonitors)-1]
		default:
			return nil, fmt.Errorf("document %d: no API type here for apiVersion %q kind %q: add it to decode", n, tm.APIVersion, tm.Kind)
		}
		strict, err := sigsjson.UnmarshalStrict(js, obj, sigsjson.DisallowDuplicateFields, sigsjson.DisallowUnknownFields)
		if err != nil {
			return nil, fmt.Errorf("document %d (%s): %w", n, tm.Kind, err)
		}
		if len(strict) > 0 {
			return nil, fmt.Errorf("document %d (%s): %v\n%s", n, tm.Kind, errors.Join(strict...), doc)
		}
		if err := checkMeta(obj.(metav1.Object), tm.Kind); err != nil {
			return nil, fmt.Errorf("document %d: %w", n, err)
		}
	}
	return r, nil
}

// checkMeta applies the API server's rules for names and labels.
func checkMeta(o metav1.Object, kind string) error {
	var errs []string
	check := validation.IsDNS1123Subdomain
	if kind == "Service" {
		check = validation.IsDNS1035Label
	}
	errs = append(errs, check(o.GetName())...)
	if o.GetNamespace() != "" {
		errs = append(errs, "the chart sets metadata.namespace; helm install --namespace should")
	}
	for _, e := range metavalidation.ValidateLabels(o.GetLabels(), field.NewPath("metadata", "labels")) {
		errs = append(errs, e.Error())
	}
	if d, ok := o.(*appsv1.Deployment); ok {
		for _, e := range metavalidation.ValidateLabels(d.Spec.Template.Labels, field.NewPath("spec", "template", "metadata", "labels")) {
			errs = append(errs, e.Error())
		}
	}
	if len(errs) > 0 {
		return fmt.Errorf("%s %q: %s", kind, o.GetName(), strings.Join(errs, "; "))
	}
	return nil
}
