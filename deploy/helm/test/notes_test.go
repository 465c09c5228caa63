package test

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"sigs.k8s.io/yaml"
)

// renderNotes renders the chart's NOTES.txt with the values files given.
// `helm template` never renders NOTES.txt and `helm install --dry-run`
// needs a cluster, so the chart is copied with NOTES.txt turned into a
// named template that one ConfigMap includes: the same template with the
// same values, release and chart.
func renderNotes(t *testing.T, values []string) string {
	t.Helper()
	dir := filepath.Join(t.TempDir(), "confgate")
	if err := os.CopyFS(dir, os.DirFS(chartDir)); err != nil {
		t.Fatal(err)
	}
	notes, err := os.ReadFile(filepath.Join(dir, "templates", "NOTES.txt"))
	if err != nil {
		t.Fatal(err)
	}
	files := map[string]string{
		"_notes_under_test.tpl": `{{- define "test.notes" -}}` + string(notes) + `{{- end }}`,
		"notes_under_test.yaml": "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: notes\ndata:\n  notes: {{ include \"test.notes\" . | toJson }}\n",
	}
	for name, text := range files {
		if err := os.WriteFile(filepath.Join(dir, "templates", name), []byte(text), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	if err := os.Remove(filepath.Join(dir, "templates", "NOTES.txt")); err != nil {
		t.Fatal(err)
	}
	args := []string{"template", release, dir, "--namespace", namespace, "--show-only", "templates/notes_under_test.yaml"}
	for _, v := range values {
		args = append(args, "--values", v)
	}
	out, err := helmRun(t, args...)
	if err != nil {
		t.Fatal(err)
	}
	var cm struct {
		Data struct {
			Notes string `json:"notes"`
		} `json:"data"`
	}
	if err := yaml.Unmarshal(out, &cm); err != nil || cm.Data.Notes == "" {
		t.Fatalf("rendered notes: %v\n%s", err, out)
	}
	return cm.Data.Notes
}

// TestNotes: the notes printed after an install point at the endpoint
// that shows a gateway's cursor, digest and lag (/debug/state: /readyz
// shows only ready and stale once callers authenticate), with the admin
// listener's scheme, and say when that endpoint needs a credential.
func TestNotes(t *testing.T) {
	for _, tc := range []struct {
		file string
		want []string // substrings, in this order
		not  []string
	}{
		{"defaults.yaml",
			[]string{"port-forward deployment/cg-confgate 9464", "curl -s http://127.0.0.1:9464/debug/state", "gRPC is served in plaintext"},
			[]string{"/readyz", "https://", "Authorization"}},
		{"production.yaml",
			[]string{"curl -s http://127.0.0.1:9464/debug/state", "may read every key", `-H "Authorization: Bearer $TOKEN".`},
			[]string{"/readyz", "https://", "plaintext"}},
		{"admin-tls.yaml",
			[]string{"--cacert ca.crt --resolve NAME:9464:127.0.0.1 https://NAME:9464/debug/state", "Secret confgate-tls", "may read every key", `-H "Authorization: Bearer $TOKEN"`, "--cert and --key"},
			[]string{"/readyz", "http://", "plaintext"}},
	} {
		t.Run(strings.TrimSuffix(tc.file, ".yaml"), func(t *testing.T) {
			notes := renderNotes(t, []string{filepath.Join(valuesDir, tc.file)})
			rest := notes
			for _, w := range tc.want {
				i := strings.Index(rest, w)
				if i < 0 {
					t.Fatalf("notes lack %q (or have it out of order):\n%s", w, notes)
				}
				rest = rest[i+len(w):]
			}
			for _, n := range tc.not {
				if strings.Contains(notes, n) {
					t.Errorf("notes hold %q:\n%s", n, notes)
				}
			}
		})
	}
}
