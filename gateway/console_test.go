package gateway_test

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/chromedp/cdproto/log"
	"github.com/chromedp/cdproto/page"
	"github.com/chromedp/cdproto/runtime"
	"github.com/chromedp/chromedp"
	"github.com/confgate/confgate/gateway"
	"github.com/confgate/confgate/internal/testkit"
	confgatev1 "github.com/confgate/confgate/proto/confgate/v1"
)

// consolePut writes one entry and waits until it is applied.
func consolePut(t *testing.T, g *testkit.Gateway, key string, value []byte, ct string, headers ...*confgatev1.Header) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 15*time.Second)
	defer cancel()
	if _, err := g.Client.Put(ctx, &confgatev1.PutRequest{Key: key, Value: value, ContentType: ct, Headers: headers, WaitApplied: true}); err != nil {
		t.Fatalf("put %q: %v", key, err)
	}
}

func consoleGet(t *testing.T, g *testkit.Gateway, path, token string) (int, string) {
	t.Helper()
	req, err := http.NewRequest(http.MethodGet, "http://"+g.Admin+path, nil)
	if err != nil {
		t.Fatal(err)
	}
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	if strings.HasSuffix(strings.SplitN(path, "?", 2)[0], "/events") {
		return resp.StatusCode, ""
	}
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b)
}

// The console is guarded like /debug/state: with an Authenticator, every
// page, the event stream and the static files need a credential of a
// principal that may read every key.
func TestConsoleGuarded(t *testing.T) {
	k := testkit.StartKafka(t)
	e := newAuthEnv(t, aOnlyACL, false, "writer", "carol")
	g := e.start(k, testkit.Topic(t), testkit.Options{})
	testkit.Put(t, e.as(g, "writer"), "b/secret-key", "secret-value")
	for _, path := range []string{"/console/", "/console/config?prefix=b/", "/console/fleet", "/console/fleet.json", "/console/client?id=x", "/console/static/console.js"} {
		for _, tc := range []struct {
			who  string
			code int
		}{{"", http.StatusUnauthorized}, {"carol", http.StatusForbidden}} {
			code, body := consoleGet(t, g, path, e.tokens[tc.who])
			if code != tc.code || strings.Contains(body, "secret") {
				t.Errorf("%s as %q: %d %q, want %d without the secret", path, tc.who, code, body, tc.code)
			}
		}
	}
	if code, _ := consoleGet(t, g, "/console/events", ""); code != http.StatusUnauthorized {
		t.Errorf("/console/events without a credential: %d, want 401", code)
	}
	code, body := consoleGet(t, g, "/console/config?prefix=b/", e.tokens["writer"])
	if code != http.StatusOK || !strings.Contains(body, "secret-value") {
		t.Errorf("config page as writer: %d %q", code, body)
	}
}

// Keys, values and headers are escaped; values are shown by content type
// (JSON indented, text, binary as a hex dump) and clipped at 64 KiB; keys
// below a prefix are grouped in folders by '/' segment.
func TestConsoleConfigPage(t *testing.T) {
	k := testkit.StartKafka(t)
	g := testkit.StartGateway(t, k, testkit.Topic(t), testkit.Options{})
	consolePut(t, g, "app/db/host", []byte("db.internal"), "text/plain")
	consolePut(t, g, "app/db/port", []byte("5432"), "")
	consolePut(t, g, "app/flags", []byte(`{"beta":true,"list":[1,2]}`), "application/json", &confgatev1.Header{Key: "owner", Value: []byte("<b>team</b>")})
	consolePut(t, g, "app/blob", []byte{0, 1, 2, 0xff, 0xfe}, "application/octet-stream")
	consolePut(t, g, "app/big", []byte(strings.Repeat("x", 100<<10)), "text/plain")
	consolePut(t, g, `app/<img src=x onerror=alert(1)>`, []byte(`</pre><script>alert(2)</script>`), "text/html")

	_, body := consoleGet(t, g, "/console/config?prefix=app/", "")
	for _, bad := range []string{"<script>alert", "<img src=x", "<b>team", "</pre><"} {
		if strings.Contains(body, bad) {
			t.Errorf("the config page has %q unescaped", bad)
		}
	}
	for _, want := range []string{
		`href="config?prefix=app%2fdb%2f"`, // a folder
		"&lt;img src=x onerror=alert(1)&gt;",
		"&lt;/pre&gt;&lt;script&gt;alert(2)&lt;/script&gt;",
		"{\n  &#34;beta&#34;: true,", // indented JSON
		"binary, 5 bytes",
		"00000000  00 01 02 ff fe",
		"102400 bytes, clipped at 64 KiB",
		"&lt;b&gt;team&lt;/b&gt;",
	} {
		if !strings.Contains(body, want) {
			t.Errorf("the config page lacks %q", want)
		}
	}
	if strings.Contains(body, "app/db/host") {
		t.Error("a key inside a folder is listed at the level above it")
	}
	_, body = consoleGet(t, g, "/console/config?prefix=app/db/", "")
	if !strings.Contains(body, "db.internal") || !strings.Contains(body, "5432") {
		t.Errorf("folder app/db/: %s", body)
	}
	if code, _ := consoleGet(t, g, "/console/config?prefix=/x", ""); code != http.StatusBadRequest {
		t.Errorf("an invalid prefix: %d, want 400", code)
	}
}

// /console/events sends ticks and a "changed" event when a batch is
// applied, and refuses streams beyond 100 at once.
func TestConsoleEvents(t *testing.T) {
	k := testkit.StartKafka(t)
	g := testkit.StartGateway(t, k, testkit.Topic(t), testkit.Options{})
	open := func() (*http.Response, error) {
		return http.Get("http://" + g.Admin + "/console/events")
	}
	resp, err := open()
	if err != nil {
		t.Fatal(err)
	}
	if resp.StatusCode != http.StatusOK || resp.Header.Get("Content-Type") != "text/event-stream" {
		t.Fatalf("events: %d %s", resp.StatusCode, resp.Header.Get("Content-Type"))
	}
	events := make(chan string, 100)
	go func() {
		sc := bufio.NewScanner(resp.Body)
		for sc.Scan() {
			if ev, ok := strings.CutPrefix(sc.Text(), "event: "); ok {
				events <- ev
			}
		}
		close(events)
	}()
	wait := func(name string) {
		t.Helper()
		timeout := time.After(10 * time.Second)
		for {
			select {
			case ev := <-events:
				if ev == name {
					return
				}
			case <-timeout:
				t.Fatalf("no %q event", name)
			}
		}
	}
	wait("tick")
	consolePut(t, g, "live/a", []byte("1"), "")
	wait("changed")

	// 99 more fill the bound; the next is refused; one closed frees a place.
	var more []*http.Response
	defer func() {
		for _, r := range more {
			r.Body.Close()
		}
	}()
	for range 99 {
		r, err := open()
		if err != nil {
			t.Fatal(err)
		}
		more = append(more, r)
		if r.StatusCode != http.StatusOK {
			t.Fatalf("stream %d: %d", len(more)+1, r.StatusCode)
		}
	}
	r, err := open()
	if err != nil {
		t.Fatal(err)
	}
	r.Body.Close()
	if r.StatusCode != http.StatusServiceUnavailable {
		t.Fatalf("stream 101: %d, want 503", r.StatusCode)
	}
	resp.Body.Close()
	testkit.Eventually(t, 10*time.Second, "a freed place", func() bool {
		r, err := open()
		if err != nil {
			return false
		}
		defer r.Body.Close()
		if r.StatusCode == http.StatusOK {
			more = append(more, r)
			return true
		}
		return false
	})
}

// browser is a headless Chromium with every console error, exception and
// dialog of its pages collected.
type browser struct {
	ctx    context.Context
	mu     sync.Mutex
	errors []string
}

func (b *browser) problems() []string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return append([]string(nil), b.errors...)
}

// chromium finds the browser; without one the test is skipped, unless
// CONFGATE_REQUIRE_BROWSER is set.
func chromium(t *testing.T) string {
	t.Helper()
	for _, p := range []string{"/usr/bin/chromium", "chromium", "chromium-browser", "google-chrome", "headless-shell"} {
		if path, err := exec.LookPath(p); err == nil {
			return path
		}
	}
	if os.Getenv("CONFGATE_REQUIRE_BROWSER") != "" {
		t.Fatal("no Chromium found (/usr/bin/chromium; apt-get install chromium) and CONFGATE_REQUIRE_BROWSER is set")
	}
	t.Skip("no Chromium found (/usr/bin/chromium; apt-get install chromium): the console's browser tests are skipped; set CONFGATE_REQUIRE_BROWSER to fail instead")
	return ""
}

func newBrowser(t *testing.T) *browser {
	t.Helper()
	path := chromium(t)
	opts := append(chromedp.DefaultExecAllocatorOptions[:], chromedp.ExecPath(path), chromedp.NoSandbox,
		chromedp.WindowSize(1280, 900), chromedp.Flag("disable-dev-shm-usage", true))
	actx, acancel := chromedp.NewExecAllocator(context.Background(), opts...)
	ctx, cancel := chromedp.NewContext(actx)
	t.Cleanup(func() { cancel(); acancel() })
	b := &browser{ctx: ctx}
	dialogs := make(chan struct{}, 16)
	err := chromedp.Listen(ctx, func(ev any) {
		var p string
		switch ev := ev.(type) {
		case *runtime.EventConsoleAPICalled:
			if ev.Type == runtime.ConsoleAPICalledTypeError || ev.Type == runtime.ConsoleAPICalledTypeAssert || ev.Type == runtime.ConsoleAPICalledTypeWarning {
				var args []string
				for _, a := range ev.Args {
					args = append(args, string(a.Value)+a.Description)
				}
				p = fmt.Sprintf("console.%s: %s", ev.Type, strings.Join(args, " "))
			}
		case *runtime.EventExceptionThrown:
			p = "exception: " + ev.ExceptionDetails.Text
			if ex := ev.ExceptionDetails.Exception; ex != nil {
				p += " " + ex.Description
			}
		case *log.EventEntryAdded:
			if ev.Entry.Level == log.EntryLevelError || ev.Entry.Level == log.EntryLevelWarning {
				p = fmt.Sprintf("log %s: %s %s", ev.Entry.Level, ev.Entry.Text, ev.Entry.URL)
			}
		case *page.EventJavascriptDialogOpening:
			p = "dialog: " + ev.Message
			select {
			case dialogs <- struct{}{}:
			default:
			}
		}
		if p != "" {
			b.mu.Lock()
			b.errors = append(b.errors, p)
			b.mu.Unlock()
		}
	})
	if err != nil {
		t.Fatalf("start chromium: %v", err)
	}
	// A dialog (an injected alert) would block the page: dismiss it.
	go func() {
		for {
			select {
			case <-ctx.Done():
				return
			case <-dialogs:
				_, _ = chromedp.Call(ctx, page.HandleJavaScriptDialog, page.HandleJavaScriptDialogParams{})
			}
		}
	}()
	return b
}

func (b *browser) run(t *testing.T, what string, actions ...chromedp.Action[chromedp.Void]) {
	t.Helper()
	ctx, cancel := context.WithTimeout(b.ctx, time.Minute)
	defer cancel()
	if err := chromedp.Do(ctx, actions...); err != nil {
		t.Fatalf("%s: %v (browser problems: %q)", what, err, b.problems())
	}
}

// eval evaluates a JavaScript expression.
func eval[T any](t *testing.T, b *browser, expr string) T {
	t.Helper()
	ctx, cancel := context.WithTimeout(b.ctx, time.Minute)
	defer cancel()
	v, err := chromedp.Run(ctx, chromedp.Evaluate[T](expr))
	if err != nil {
		t.Fatalf("evaluate %s: %v (browser problems: %q)", expr, err, b.problems())
	}
	return v
}

// waitText waits until the element sel's text contains s.
func (b *browser) waitText(t *testing.T, sel, s string) {
	t.Helper()
	js, _ := json.Marshal(sel)
	want, _ := json.Marshal(s)
	b.run(t, fmt.Sprintf("%s shows %q", sel, s), chromedp.Poll[chromedp.Void](
		fmt.Sprintf(`(function(){var e=document.querySelector(%s);return !!e&&e.innerText.includes(%s)})()`, js, want),
		chromedp.WithPollingTimeout(20*time.Second), chromedp.WithPollingInterval(50*time.Millisecond)))
}

// markPage tags the loaded document, so that checkNoReload can tell a
// reload.
func (b *browser) markPage(t *testing.T) {
	t.Helper()
	eval[int](t, b, `window.__confgateMark = 42`)
}

func (b *browser) checkNoReload(t *testing.T) {
	t.Helper()
	if v := eval[int](t, b, `window.__confgateMark || 0`); v != 42 {
		t.Error("the page was reloaded")
	}
}

// screenshot writes docs/console/name.png with CONFGATE_CONSOLE_SCREENSHOTS=1.
func (b *browser) screenshot(t *testing.T, name string) {
	t.Helper()
	if os.Getenv("CONFGATE_CONSOLE_SCREENSHOTS") != "1" {
		return
	}
	ctx, cancel := context.WithTimeout(b.ctx, time.Minute)
	defer cancel()
	buf, err := chromedp.Run(ctx, chromedp.FullScreenshot(100))
	if err != nil {
		t.Fatalf("screenshot %s: %v", name, err)
	}
	if err := os.WriteFile(filepath.Join("..", "docs", "console", name+".png"), buf, 0o644); err != nil {
		t.Fatal(err)
	}
}

func (b *browser) checkClean(t *testing.T) {
	t.Helper()
	for _, p := range b.problems() {
		t.Errorf("browser: %s", p)
	}
}

// The overview and config pages in Chromium, with the fleet view off:
// they load without a console error, the overview's figures follow the
// store, and a put shows on the config page without a reload.
func TestConsoleBrowserOverviewAndConfig(t *testing.T) {
	k := testkit.StartKafka(t)
	g := testkit.StartGateway(t, k, testkit.Topic(t), testkit.Options{})
	consolePut(t, g, "payments/db/host", []byte("db.payments.internal"), "text/plain")
	consolePut(t, g, "payments/db/pool", []byte(`{"min":2,"max":32,"idle_timeout":"5m"}`), "application/json",
		&confgatev1.Header{Key: "owner", Value: []byte("team-payments")})
	consolePut(t, g, "payments/limits", []byte(`{"per_minute":600,"burst":50}`), "application/json")
	consolePut(t, g, "payments/cert-fingerprint", []byte{0x3f, 0x00, 0xa1, 0x9c, 0x42, 0xe0}, "application/octet-stream")
	consolePut(t, g, "search/replicas", []byte("3"), "text/plain")
	consolePut(t, g, `payments/<img src=x onerror=alert("key")>`, []byte(`<script>alert("value")</script>`), "text/html")
	base := "http://" + g.Admin + "/console/"
	b := newBrowser(t)

	// Overview: figures, then live: a put moves the entry count.
	b.run(t, "overview", chromedp.Navigate(base), chromedp.WaitVisible(chromedp.CSS(`[data-field=entries]`)))
	b.waitText(t, "#badge-live", "live")
	b.waitText(t, "[data-field=ready_text]", "ready")
	b.markPage(t)
	if entries := eval[string](t, b, `document.querySelector("[data-field=entries]").textContent`); entries != "6" {
		t.Errorf("overview entries %q, want 6", entries)
	}
	b.waitText(t, "#fleet-summary", "fleet view is off")
	consolePut(t, g, "search/shards", []byte("12"), "text/plain")
	b.waitText(t, "[data-field=entries]", "7")
	b.waitText(t, "[data-field=rate]", "records/s")
	b.checkNoReload(t)
	b.screenshot(t, "overview")

	// Config: the root lists folders; payments/ lists a folder and entries.
	b.run(t, "config root", chromedp.Navigate(base+"config"), chromedp.WaitVisible(chromedp.CSS(`#entries`)))
	b.waitText(t, "#entries", "payments/")
	b.waitText(t, "#entries", "search/")
	b.run(t, "open payments/", chromedp.Click(chromedp.CSS(`a[href="config?prefix=payments%2f"]`)), chromedp.WaitVisible(chromedp.CSS(`.entry`)))
	b.waitText(t, "#entries", `"per_minute": 600`)
	b.waitText(t, "#entries", `<img src=x onerror=alert("key")>`) // shown as text, not run
	b.waitText(t, "#entries", `<script>alert("value")</script>`)
	b.waitText(t, "#entries", "binary, 6 bytes")
	b.waitText(t, "#entries", "db/")
	b.markPage(t)
	consolePut(t, g, "payments/feature-flags", []byte(`{"new_checkout":true}`), "application/json")
	b.waitText(t, "#entries", "payments/feature-flags")
	b.waitText(t, "#entries", `"new_checkout": true`)
	b.checkNoReload(t)
	b.screenshot(t, "config")

	// A folder's own page.
	b.run(t, "open payments/db/", chromedp.Navigate(base+"config?prefix="+url.QueryEscape("payments/db/")), chromedp.WaitVisible(chromedp.CSS(`.entry`)))
	b.waitText(t, "#entries", "db.payments.internal")
	b.waitText(t, "#entries", "team-payments")
	b.checkClean(t)
}

// The fleet and client pages in Chromium with a fleet view: a client the
// test subscribes shows in the table, one subscribed later shows without
// a reload, the filters narrow the table, and the client page says
// everything about one client.
func TestConsoleBrowserFleet(t *testing.T) {
	k := testkit.StartKafka(t)
	mf := &memFleet{}
	g := testkit.StartGateway(t, k, testkit.Topic(t), testkit.Options{Gateway: gateway.Config{Fleet: mf, FleetReportInterval: time.Hour}})
	consolePut(t, g, "payments/limits", []byte(`{"per_minute":600}`), "application/json")
	consolePut(t, g, "search/replicas", []byte("3"), "text/plain")
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	subscribe := func(id, service string, labels map[string]string, prefix string, report bool) {
		t.Helper()
		ci := &confgatev1.ClientInfo{ClientId: id, Service: service, Labels: labels}
		sel := &confgatev1.Selector{Prefixes: []string{prefix}}
		st, err := g.Client.Subscribe(ctx, &confgatev1.SubscribeRequest{Selector: sel, Client: ci})
		if err != nil {
			t.Fatal(err)
		}
		var end *confgatev1.SnapshotEnd
		for end == nil {
			m, err := st.Recv()
			if err != nil {
				t.Fatalf("snapshot: %v", err)
			}
			end = m.GetSnapshotEnd()
		}
		if report {
			if _, err := g.Client.Report(ctx, &confgatev1.ReportRequest{Client: ci, Selector: sel, AppliedCursor: end.GetCursor(), Digest: end.GetDigest(),
				Rejections: []*confgatev1.Rejection{{Key: prefix + "limits", Version: &confgatev1.Version{Partition: 0, Offset: 0}, Reason: "per_minute above <this> service's cap"}}}); err != nil {
				t.Fatalf("report: %v", err)
			}
		}
	}
	subscribe("checkout-7f9c", "payments", map[string]string{"zone": "eu-west-1a", "version": "1.42.0"}, "payments/", true)
	subscribe("checkout-2b1d", "payments", map[string]string{"zone": "eu-west-1b", "version": "1.42.0"}, "payments/", false)
	base := "http://" + g.Admin + "/console/"
	b := newBrowser(t)

	b.run(t, "overview", chromedp.Navigate(base), chromedp.WaitVisible(chromedp.CSS(`#fleet-summary`)))
	b.waitText(t, "#fleet-summary", "payments")
	b.screenshot(t, "overview-fleet")

	b.run(t, "fleet", chromedp.Navigate(base+"fleet"), chromedp.WaitVisible(chromedp.CSS(`#fleet-table`)))
	b.waitText(t, "#fleet-table", "checkout-7f9c")
	b.waitText(t, "#fleet-table", "zone=eu-west-1a")
	b.waitText(t, "#fleet-table", "in_sync")
	b.waitText(t, "#fleet-table", "not_reporting")
	b.waitText(t, "#badge-live", "live")
	b.markPage(t)
	subscribe("indexer-01", "search", map[string]string{"zone": "eu-west-1a"}, "search/", false)
	b.waitText(t, "#fleet-table", "indexer-01") // from fleet.json, without a reload
	b.checkNoReload(t)
	b.screenshot(t, "fleet")

	rows := `document.querySelectorAll("#fleet-table tbody tr").length`
	b.run(t, "filter", chromedp.Navigate(base+"fleet?service=search"), chromedp.WaitVisible(chromedp.CSS(`#fleet-table`)))
	if rows := eval[int](t, b, rows); rows != 1 {
		t.Errorf("service=search: %d rows, want 1", rows)
	}
	b.run(t, "filter by state", chromedp.Navigate(base+"fleet?state=in_sync"), chromedp.WaitVisible(chromedp.CSS(`#fleet-table`)))
	if rows := eval[int](t, b, rows); rows != 1 {
		t.Errorf("state=in_sync: %d rows, want 1", rows)
	}

	b.run(t, "client", chromedp.Navigate(base+"fleet"), chromedp.WaitVisible(chromedp.CSS(`#fleet-table`)),
		chromedp.Click(chromedp.CSS(`a[href="client?id=checkout-7f9c"]`)), chromedp.WaitVisible(chromedp.CSS(`#client`)))
	b.waitText(t, "#client", "checkout-7f9c")
	b.waitText(t, "#client", "version=1.42.0")
	b.waitText(t, "#client", "per_minute above <this> service's cap")
	b.waitText(t, "#client", "payments/")
	b.screenshot(t, "client")
	b.checkClean(t)
}
