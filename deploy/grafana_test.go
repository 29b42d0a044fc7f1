package deploy

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"regexp"
	"slices"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"gopkg.in/yaml.v3"

	"github.com/vonproject/von/agent"
	// The etcd server registers its metrics (etcd_*) on Prometheus' default
	// registry when it is linked in: the same code an external etcd runs, and
	// what a manager on its embedded etcd serves (managerd).
	"github.com/vonproject/von/etcdembed"
	"github.com/vonproject/von/reservation"
)

// The Grafana dashboard and the Prometheus rules in grafana/ query metrics by name;
// these tests fail when one names a metric or a label the code does not register, so
// renaming a metric breaks the test and not, silently, the operator's dashboard. They
// also hold docs/metrics.md to the metrics the code registers and to the alerts.

const (
	dashboardFile = "grafana/von.json"
	alertsFile    = "grafana/alerts.yaml"
	metricsDoc    = "../docs/metrics.md"
)

// metric is a registered metric family: where it comes from and its labels.
type metric struct {
	source string          // manager, agent, go/process, etcd, prometheus
	labels map[string]bool // variable labels (for etcd's, the labels seen on samples)
	typ    string          // counter, gauge, histogram, summary, untyped; "" when unknown
}

// Target labels that Prometheus adds to every series it scrapes.
var targetLabels = []string{"job", "instance"}

var descRE = regexp.MustCompile(`^Desc\{fqName: "([^"]*)", .*variableLabels: \{([^}]*)\}\}$`)

// describe records the descriptions of what is registered on it, like a
// prometheus.Registry would, without gathering.
type describe map[string]metric

func (d describe) add(source string, c prometheus.Collector) {
	ch := make(chan *prometheus.Desc)
	go func() { c.Describe(ch); close(ch) }()
	for x := range ch {
		d.addDesc(source, x)
	}
}

func (d describe) addDesc(source string, x *prometheus.Desc) {
	m := descRE.FindStringSubmatch(x.String())
	if m == nil {
		panic("unparsable metric description " + x.String())
	}
	labels := map[string]bool{}
	for l := range strings.SplitSeq(m[2], ",") {
		if l = strings.TrimSuffix(strings.TrimPrefix(l, "c("), ")"); l != "" {
			labels[l] = true
		}
	}
	d[m[1]] = metric{source: source, labels: labels}
}

func (d describe) Register(c prometheus.Collector) error { d.add("manager", c); return nil }
func (d describe) MustRegister(cs ...prometheus.Collector) {
	for _, c := range cs {
		d.add("manager", c)
	}
}
func (d describe) Unregister(prometheus.Collector) bool { return false }

// registered collects every metric the manager and the agent serve from the code
// that registers them, etcd's from the etcd server linked into this test, and the
// series Prometheus makes itself for every target.
func registered(t *testing.T) map[string]metric {
	t.Helper()
	all := describe{}
	// The manager's registry (managerd.Run): Go and process collectors, the
	// reservation metrics and the state collector.
	all.add("go/process", collectors.NewGoCollector())
	all.add("go/process", collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	reservation.NewMetrics(all)
	all.add("manager", (*reservation.Manager)(nil).StateCollector())
	for _, d := range agent.MetricDescs() {
		if m := descRE.FindStringSubmatch(d.String()); m != nil && all[m[1]].source == "go/process" {
			continue
		}
		all.addDesc("agent", d)
	}

	// Types, from what registries gather: the manager's metrics with a child in
	// each vector, its state collector's, and a simulated agent's (all but its
	// vectors, which have no child before the agent serves a call).
	typed := prometheus.NewRegistry()
	m := reservation.NewMetrics(typed)
	m.TwoPC.WithLabelValues("commit").Observe(1)
	m.Rejections.WithLabelValues("capacity").Inc()
	m.AgentCalls.WithLabelValues("refresh", "ok").Inc()
	m.Conflicts.WithLabelValues("admission").Inc()
	m.Release.WithLabelValues("ok").Observe(1)
	// The state collector's series are computed at scrape time: a manager on a real etcd.
	e, err := etcdembed.Start(context.Background(), etcdembed.Options{Dir: t.TempDir(), NoFsync: true})
	if err != nil {
		t.Fatalf("etcd for the manager's state collector: %v", err)
	}
	defer e.Close()
	cli, err := e.Client()
	if err != nil {
		t.Fatal(err)
	}
	defer cli.Close()
	typed.MustRegister(reservation.New(cli, reservation.Config{}).StateCollector())
	setTypes(t, all, typed)
	a, err := agent.New(context.Background(), agent.Config{Node: "r1", StateDir: t.TempDir(), ListenAddr: "127.0.0.1:0", Insecure: true,
		Simulate: []agent.SimulatedInterface{{Name: "eth0", Addrs: []string{"10.77.0.1/30"}}}})
	if err != nil {
		t.Fatalf("a simulated agent: %v", err)
	}
	setTypes(t, all, a.Registry())
	a.Close()

	// etcd's own metrics, as an external etcd serves them: what the etcd server
	// registered on the default registry. Vectors with no child yet are not
	// gathered, so only plain metrics can be used (the dashboard uses those).
	mfs, err := prometheus.DefaultGatherer.Gather()
	if err != nil {
		t.Fatalf("gathering etcd's metrics: %v", err)
	}
	for _, mf := range mfs {
		if !strings.HasPrefix(mf.GetName(), "etcd_") {
			continue
		}
		labels := map[string]bool{}
		for _, s := range mf.GetMetric() {
			for _, l := range s.GetLabel() {
				labels[l.GetName()] = true
			}
		}
		all[mf.GetName()] = metric{source: "etcd", labels: labels, typ: strings.ToLower(mf.GetType().String())}
	}
	// Made by Prometheus for every scrape target.
	all["up"] = metric{source: "prometheus", labels: map[string]bool{}, typ: "gauge"}
	return all
}

func setTypes(t *testing.T, all map[string]metric, g prometheus.Gatherer) {
	t.Helper()
	mfs, err := g.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, mf := range mfs {
		if m, ok := all[mf.GetName()]; ok {
			m.typ = strings.ToLower(mf.GetType().String())
			all[mf.GetName()] = m
		}
	}
}

// A PromQL expression, as far as these tests need to read one: the metric names
// it selects, the labels its selectors match on, and the labels it groups by.
type query struct {
	selectors []selector
	grouping  []string // labels of by, without, on, ignoring, group_left, group_right
}

type selector struct {
	name   string
	labels []string
}

var (
	groupingWords = set("by", "without", "on", "ignoring", "group_left", "group_right")
	operatorWords = set("and", "or", "unless", "bool", "offset", "atan2", "inf", "nan")
	aggregations  = set("sum", "min", "max", "avg", "group", "stddev", "stdvar", "count", "count_values",
		"bottomk", "topk", "quantile", "limitk", "limit_ratio")
	functions = set("abs", "absent", "absent_over_time", "ceil", "changes", "clamp", "clamp_max", "clamp_min",
		"day_of_month", "day_of_week", "day_of_year", "days_in_month", "delta", "deriv", "exp", "floor",
		"histogram_avg", "histogram_count", "histogram_fraction", "histogram_quantile", "histogram_stddev",
		"histogram_stdvar", "histogram_sum", "double_exponential_smoothing", "holt_winters", "hour", "idelta",
		"increase", "irate", "label_join", "label_replace", "ln", "log2", "log10", "minute", "month",
		"predict_linear", "rate", "resets", "round", "scalar", "sgn", "sort", "sort_desc", "sort_by_label",
		"sort_by_label_desc", "sqrt", "time", "timestamp", "vector", "year", "avg_over_time", "min_over_time",
		"max_over_time", "sum_over_time", "count_over_time", "quantile_over_time", "stddev_over_time",
		"stdvar_over_time", "last_over_time", "present_over_time", "mad_over_time", "start", "end",
		"acos", "acosh", "asin", "asinh", "atan", "atanh", "cos", "cosh", "sin", "sinh", "tan", "tanh", "deg", "rad", "pi")
)

func set(words ...string) map[string]bool {
	m := map[string]bool{}
	for _, w := range words {
		m[w] = true
	}
	return m
}

type token struct {
	kind byte // 'i' identifier, 'n' number or duration, 's' string, 'v' Grafana variable, 'p' punctuation
	text string
}

func lex(expr string) ([]token, error) {
	var out []token
	for i := 0; i < len(expr); {
		c := expr[i]
		switch {
		case c == ' ' || c == '\t' || c == '\n' || c == '\r':
			i++
		case c == '#':
			for i < len(expr) && expr[i] != '\n' {
				i++
			}
		case c == '"' || c == '\'' || c == '`':
			j := i + 1
			for j < len(expr) && expr[j] != c {
				if expr[j] == '\\' && c != '`' {
					j++
				}
				j++
			}
			if j >= len(expr) {
				return nil, fmt.Errorf("unterminated string at %d", i)
			}
			out = append(out, token{'s', expr[i+1 : j]})
			i = j + 1
		case c == '$':
			j := i + 1
			if j < len(expr) && expr[j] == '{' {
				k := strings.IndexByte(expr[j:], '}')
				if k < 0 {
					return nil, fmt.Errorf("unterminated ${ at %d", i)
				}
				j += k + 1
			} else {
				for j < len(expr) && isIdent(expr[j], false) {
					j++
				}
			}
			out = append(out, token{'v', expr[i:j]})
			i = j
		case isIdent(c, true):
			j := i
			for j < len(expr) && isIdent(expr[j], false) {
				j++
			}
			out = append(out, token{'i', expr[i:j]})
			i = j
		case c >= '0' && c <= '9' || c == '.':
			j := i
			for j < len(expr) && (isIdent(expr[j], false) || expr[j] == '.') && expr[j] != ':' {
				j++
			}
			out = append(out, token{'n', expr[i:j]})
			i = j
		default:
			if i+1 < len(expr) && slices.Contains([]string{"==", "!=", ">=", "<=", "=~", "!~"}, expr[i:i+2]) {
				out = append(out, token{'p', expr[i : i+2]})
				i += 2
			} else if strings.IndexByte("(){}[],+-*/%^=<>@:", c) >= 0 {
				out = append(out, token{'p', string(c)})
				i++
			} else {
				return nil, fmt.Errorf("unexpected %q at %d", c, i)
			}
		}
	}
	return out, nil
}

func isIdent(c byte, first bool) bool {
	return c == '_' || c == ':' || c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || !first && c >= '0' && c <= '9'
}

// parse reads expr well enough to find every metric it selects; it fails on
// unbalanced brackets, unknown functions and selectors without a metric name.
func parse(expr string) (query, error) {
	toks, err := lex(expr)
	if err != nil {
		return query{}, err
	}
	var q query
	depth := map[string]int{}
	next := func(i int) token {
		if i+1 < len(toks) {
			return toks[i+1]
		}
		return token{}
	}
	for i := 0; i < len(toks); i++ {
		tk := toks[i]
		switch tk.kind {
		case 'p':
			switch tk.text {
			case "(":
				depth["()"]++
			case ")":
				depth["()"]--
			case "{":
				return q, fmt.Errorf("a selector without a metric name at %q", rest(toks, i))
			case "[":
				j := i
				for j < len(toks) && toks[j].text != "]" {
					j++
				}
				if j == len(toks) {
					return q, fmt.Errorf("unterminated [")
				}
				i = j
			case "]", "}":
				return q, fmt.Errorf("unbalanced %q", tk.text)
			}
			if depth["()"] < 0 {
				return q, fmt.Errorf("unbalanced )")
			}
		case 'i':
			w := tk.text
			switch {
			case groupingWords[w]:
				if next(i).text != "(" {
					if w == "group_left" || w == "group_right" {
						continue
					}
					return q, fmt.Errorf("%s without a label list", w)
				}
				j := i + 2
				for ; j < len(toks) && toks[j].text != ")"; j++ {
					if toks[j].kind == 'i' {
						q.grouping = append(q.grouping, toks[j].text)
					} else if toks[j].text != "," {
						return q, fmt.Errorf("%s (...) lists %q", w, toks[j].text)
					}
				}
				i = j
			case operatorWords[strings.ToLower(w)]:
			case next(i).text == "(":
				if !functions[w] && !aggregations[w] {
					return q, fmt.Errorf("unknown function %s", w)
				}
			case aggregations[w] && groupingWords[next(i).text]:
			default:
				if strings.HasPrefix(w, "__") {
					return q, fmt.Errorf("selecting by %s is not supported here", w)
				}
				s := selector{name: w}
				if next(i).text == "{" {
					j := i + 2
					for ; j < len(toks) && toks[j].text != "}"; j++ {
						if toks[j].kind != 'i' || j+2 >= len(toks) || !slices.Contains([]string{"=", "!=", "=~", "!~"}, toks[j+1].text) ||
							(toks[j+2].kind != 's' && toks[j+2].kind != 'v') {
							return q, fmt.Errorf("bad label matcher in %s{...} at %q", w, rest(toks, j))
						}
						s.labels = append(s.labels, toks[j].text)
						j += 2
						if j+1 < len(toks) && toks[j+1].text == "," {
							j++
						}
					}
					if j == len(toks) {
						return q, fmt.Errorf("unterminated {")
					}
					i = j
				}
				q.selectors = append(q.selectors, s)
			}
		}
	}
	if depth["()"] != 0 {
		return q, fmt.Errorf("unbalanced (")
	}
	if len(q.selectors) == 0 {
		return q, fmt.Errorf("selects no metric")
	}
	return q, nil
}

func rest(toks []token, i int) string {
	var b strings.Builder
	for _, t := range toks[i:min(i+6, len(toks))] {
		b.WriteString(t.text + " ")
	}
	return strings.TrimSpace(b.String())
}

// check reports what in expr names a metric or label that is not registered.
func check(expr string, all map[string]metric) []string {
	q, err := parse(expr)
	if err != nil {
		return []string{err.Error()}
	}
	var problems []string
	known := set(targetLabels...)
	for _, s := range q.selectors {
		m, base, ok := lookup(s.name, all)
		if !ok {
			problems = append(problems, fmt.Sprintf("metric %s is not registered by the code", s.name))
			continue
		}
		if base != s.name && m.typ != "" && m.typ != "histogram" && m.typ != "summary" {
			problems = append(problems, fmt.Sprintf("%s: %s is a %s, not a histogram", s.name, base, m.typ))
		}
		labels := maps(m.labels, set(targetLabels...))
		if strings.HasSuffix(s.name, "_bucket") {
			labels["le"] = true
		}
		for l := range labels {
			known[l] = true
		}
		for _, l := range s.labels {
			if !labels[l] {
				problems = append(problems, fmt.Sprintf("%s has no label %s (it has %v)", s.name, l, sortedKeys(m.labels)))
			}
		}
	}
	for _, l := range q.grouping {
		if !known[l] {
			problems = append(problems, fmt.Sprintf("grouping by %s, a label no metric of the expression has", l))
		}
	}
	return problems
}

// lookup finds name, or the histogram or summary it is a series of.
func lookup(name string, all map[string]metric) (metric, string, bool) {
	if m, ok := all[name]; ok {
		return m, name, true
	}
	for _, suffix := range []string{"_bucket", "_sum", "_count"} {
		if base, ok := strings.CutSuffix(name, suffix); ok {
			if m, ok := all[base]; ok && (suffix != "_bucket" || m.typ != "summary") {
				return m, base, true
			}
		}
	}
	return metric{}, "", false
}

func maps(a, b map[string]bool) map[string]bool {
	out := map[string]bool{}
	for k := range a {
		out[k] = true
	}
	for k := range b {
		out[k] = true
	}
	return out
}

func sortedKeys(m map[string]bool) []string {
	out := make([]string, 0, len(m))
	for k := range m {
		out = append(out, k)
	}
	sort.Strings(out)
	return out
}

// The checker itself: what it must accept and what it must refuse.
func TestPromQLCheck(t *testing.T) {
	all := map[string]metric{
		"x_total":   {labels: set("method"), typ: "counter"},
		"h_seconds": {labels: set("outcome"), typ: "histogram"},
		"g":         {labels: set(), typ: "gauge"},
	}
	for _, expr := range []string{
		`sum by (method) (rate(x_total{job=~"$job", method!="a"}[$__rate_interval]))`,
		`histogram_quantile(0.99, sum by (le, outcome) (rate(h_seconds_bucket{outcome="commit"}[5m]))) > 0.5`,
		`h_seconds_count / h_seconds_sum`,
		`count(g == 0) or vector(0)`,
		`absent(g{instance="a:1"} == 1)`,
		`sum without (instance) (x_total) and on (method) x_total offset 1h`,
		`max_over_time(g[10m:1m]) > 2 * g`,
	} {
		if p := check(expr, all); len(p) > 0 {
			t.Errorf("%s: %v", expr, p)
		}
	}
	for expr, want := range map[string]string{
		`rate(y_total[5m])`:                     "y_total is not registered",
		`rate(x_total{result="ok"}[5m])`:        "no label result",
		`sum by (reason) (rate(x_total[5m]))`:   "grouping by reason",
		`g_bucket`:                              "g is a gauge, not a histogram",
		`rat(x_total[5m])`:                      "unknown function rat",
		`sum(rate(x_total[5m])`:                 "unbalanced (",
		`{__name__="x_total"}`:                  "without a metric name",
		`x_total{method="a"`:                    "unterminated {",
		`sum by (method (x_total)`:              "lists",
		`histogram_quantile(0.9, g_count)`:      "not a histogram",
		`x_total{method=~"a", outcome="b"} > 0`: "no label outcome",
	} {
		p := check(expr, all)
		if !slices.ContainsFunc(p, func(s string) bool { return strings.Contains(s, want) }) {
			t.Errorf("%s: problems %q, want one saying %q", expr, p, want)
		}
	}
}

// The dashboard: valid JSON Grafana can import, every query over registered metrics.
func TestGrafanaDashboard(t *testing.T) {
	all := registered(t)
	b, err := os.ReadFile(dashboardFile)
	if err != nil {
		t.Fatal(err)
	}
	var dash struct {
		Title, UID    string
		SchemaVersion int `json:"schemaVersion"`
		Templating    struct {
			List []struct {
				Name, Type string
				Query      any
			}
		}
		Panels []panel
	}
	dec := json.NewDecoder(bytes.NewReader(b))
	if err := dec.Decode(&dash); err != nil {
		t.Fatalf("%s: %v", dashboardFile, err)
	}
	if dash.Title == "" || dash.UID == "" || dash.SchemaVersion < 36 {
		t.Errorf("title %q, uid %q, schemaVersion %d: want a title, a uid and a schema of Grafana 10 or later", dash.Title, dash.UID, dash.SchemaVersion)
	}
	vars := map[string]bool{"__rate_interval": true, "__interval": true, "__range": true}
	for _, v := range dash.Templating.List {
		vars[v.Name] = true
		if v.Type != "query" {
			continue
		}
		q, _ := v.Query.(string)
		if m, ok := v.Query.(map[string]any); ok {
			q, _ = m["query"].(string)
		}
		lv := regexp.MustCompile(`^label_values\((.+),\s*([a-zA-Z_]\w*)\)$`).FindStringSubmatch(q)
		if lv == nil {
			t.Errorf("variable %s: query %q is not label_values(SELECTOR, LABEL)", v.Name, q)
			continue
		}
		for _, p := range check(lv[1], all) {
			t.Errorf("variable %s: %s", v.Name, p)
		}
		if m, _, ok := lookup(strings.SplitN(lv[1], "{", 2)[0], all); ok && !m.labels[lv[2]] && !slices.Contains(targetLabels, lv[2]) {
			t.Errorf("variable %s: label_values of %s, which has no label %s", v.Name, lv[1], lv[2])
		}
	}
	ids := map[int]bool{}
	titles := map[string]bool{}
	var walk func(ps []panel)
	n := 0
	walk = func(ps []panel) {
		for _, p := range ps {
			if ids[p.ID] {
				t.Errorf("panel id %d used twice", p.ID)
			}
			ids[p.ID] = true
			walk(p.Panels)
			if p.Type == "row" {
				continue
			}
			n++
			if p.Title == "" || p.Description == "" {
				t.Errorf("panel %d: want a title and a description, have %q, %q", p.ID, p.Title, p.Description)
			}
			if titles[p.Title] {
				t.Errorf("two panels titled %q", p.Title)
			}
			titles[p.Title] = true
			if p.GridPos.W <= 0 || p.GridPos.H <= 0 || p.GridPos.X+p.GridPos.W > 24 {
				t.Errorf("panel %q: grid position %+v", p.Title, p.GridPos)
			}
			if p.Datasource.UID != "${datasource}" {
				t.Errorf("panel %q: data source %q, want the ${datasource} variable", p.Title, p.Datasource.UID)
			}
			if len(p.Targets) == 0 {
				t.Errorf("panel %q has no query", p.Title)
			}
			for _, tg := range p.Targets {
				for _, v := range regexp.MustCompile(`\$\{?(\w+)`).FindAllStringSubmatch(tg.Expr, -1) {
					if !vars[v[1]] {
						t.Errorf("panel %q: $%s is not a dashboard variable", p.Title, v[1])
					}
				}
				for _, prob := range check(tg.Expr, all) {
					t.Errorf("panel %q, query %s: %s\n  %s", p.Title, tg.RefID, prob, tg.Expr)
				}
			}
		}
	}
	walk(dash.Panels)
	if n < 20 {
		t.Errorf("%d panels; the dashboard lost some", n)
	}
	// The panels the dashboard is for (issue 11).
	for _, title := range []string{"Reservations by state", "Reserve round latency", "Admission rejections by reason",
		"Ledger conflicts", "Agents up", "Agents down", "Soonest partition lease", "Refresh and Sync errors",
		"etcd WAL fsync (p99)", "Prepare and Commit latency (p99)", "Agent call errors",
		"Degraded ONs", "Agents not live (leader's view)", "Leading manager", "Release round latency",
		"Release rounds and lease expiries"} {
		if !titles[title] {
			t.Errorf("no panel %q", title)
		}
	}
}

type panel struct {
	ID          int
	Type, Title string
	Description string
	Datasource  struct{ UID string }
	GridPos     struct{ X, Y, W, H int } `json:"gridPos"`
	Targets     []struct{ RefID, Expr string }
	Panels      []panel
}

type ruleFile struct {
	Groups []struct {
		Name  string `yaml:"name"`
		Rules []rule `yaml:"rules"`
	} `yaml:"groups"`
}

type rule struct {
	Alert       string            `yaml:"alert"`
	Record      string            `yaml:"record"`
	Expr        string            `yaml:"expr"`
	For         string            `yaml:"for"`
	Labels      map[string]string `yaml:"labels"`
	Annotations map[string]string `yaml:"annotations"`
}

func loadRules(t *testing.T) ruleFile {
	t.Helper()
	f, err := os.Open(alertsFile)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	var rf ruleFile
	dec := yaml.NewDecoder(f)
	dec.KnownFields(true) // a misspelt key is an error, not a rule Prometheus ignores
	if err := dec.Decode(&rf); err != nil {
		t.Fatalf("%s: %v", alertsFile, err)
	}
	return rf
}

// The alert rules: Prometheus' rule-file format, expressions over registered
// metrics, and every alert explained: a summary, a description that says what it
// means and what to do, and a runbook in docs/metrics.md.
func TestAlertRules(t *testing.T) {
	all := registered(t)
	rf := loadRules(t)
	doc, err := os.ReadFile(metricsDoc)
	if err != nil {
		t.Fatal(err)
	}
	sections := docSections(string(doc))
	groups, alerts := map[string]bool{}, map[string]bool{}
	for _, g := range rf.Groups {
		if g.Name == "" || groups[g.Name] {
			t.Errorf("group name %q empty or used twice", g.Name)
		}
		groups[g.Name] = true
		for _, r := range g.Rules {
			name := r.Alert
			if name == "" {
				t.Errorf("group %s: a rule that is not an alert (record %q)", g.Name, r.Record)
				continue
			}
			if alerts[name] {
				t.Errorf("alert %s defined twice", name)
			}
			alerts[name] = true
			for _, p := range check(r.Expr, all) {
				t.Errorf("alert %s: %s\n  %s", name, p, r.Expr)
			}
			if r.For != "" {
				if _, err := time.ParseDuration(r.For); err != nil {
					t.Errorf("alert %s: for %q: %v", name, r.For, err)
				}
			}
			if s := r.Labels["severity"]; s != "critical" && s != "warning" && s != "info" {
				t.Errorf("alert %s: severity %q, want critical, warning or info", name, s)
			}
			for k := range r.Annotations {
				if k != "summary" && k != "description" && k != "runbook_url" {
					t.Errorf("alert %s: annotation %s (want summary, description, runbook_url)", name, k)
				}
			}
			if s := r.Annotations["summary"]; s == "" || strings.Contains(s, "\n") || len(s) > 120 {
				t.Errorf("alert %s: summary %q, want one line of at most 120 characters", name, s)
			}
			// Runbook style: what it means, then what to do, in two sentences at least.
			if d := r.Annotations["description"]; strings.Count(d, ". ") < 1 || len(d) < 120 {
				t.Errorf("alert %s: description %q: want what it means and what to do, in a few sentences", name, d)
			}
			anchor := strings.ToLower(name)
			if want := "https://github.com/vonproject/von/blob/main/docs/metrics.md#" + anchor; r.Annotations["runbook_url"] != want {
				t.Errorf("alert %s: runbook_url %q, want %s", name, r.Annotations["runbook_url"], want)
			}
			if sec, ok := sections[anchor]; !ok {
				t.Errorf("alert %s: docs/metrics.md has no section ### %s", name, name)
			} else if !strings.Contains(sec, "What to do") {
				t.Errorf("alert %s: its section in docs/metrics.md does not say what to do (\"What to do\")", name)
			}
		}
	}
	for anchor := range sections {
		if strings.HasPrefix(anchor, "von") && !alertsLower(alerts)[anchor] {
			t.Errorf("docs/metrics.md documents alert %s, which alerts.yaml does not define", anchor)
		}
	}
	// The alerts the rules are for (issue 11).
	for _, a := range []string{"VONAgentDown", "VONInterfaceDown", "VONPartitionNotEnforced", "VONPartitionLeaseExpiring",
		"VONAdmissionRejectionsRising", "VONEtcdSlowFsync", "VONNoManager",
		"VONReservationDegraded", "VONAgentsNotLive", "VONLeaseExpiries", "VONNoLeader", "VONEtcdNoLeader"} {
		if !alerts[a] {
			t.Errorf("no alert %s", a)
		}
	}
	// promtool, where installed, checks the file as Prometheus will load it.
	if promtool, err := exec.LookPath("promtool"); err == nil {
		if out, err := exec.Command(promtool, "check", "rules", alertsFile).CombinedOutput(); err != nil {
			t.Errorf("promtool check rules: %v\n%s", err, out)
		}
	}
}

func alertsLower(alerts map[string]bool) map[string]bool {
	out := map[string]bool{}
	for a := range alerts {
		out[strings.ToLower(a)] = true
	}
	return out
}

// docSections returns the text under each ### heading of doc, by the heading's
// anchor (lower case, as GitHub makes it for a single word).
func docSections(doc string) map[string]string {
	out := map[string]string{}
	var cur string
	for l := range strings.SplitSeq(doc, "\n") {
		switch {
		case strings.HasPrefix(l, "### "):
			cur = strings.ToLower(strings.TrimSpace(strings.TrimPrefix(l, "### ")))
			out[cur] = ""
		case strings.HasPrefix(l, "## "), strings.HasPrefix(l, "# "):
			cur = ""
		case cur != "":
			out[cur] += l + "\n"
		}
	}
	return out
}

var docRowRE = regexp.MustCompile("^\\| `([a-z_:]+)` \\| (counter|gauge|histogram|summary) \\| ([^|]*) \\| ([^|]+) \\|$")

// docs/metrics.md lists every metric the manager and the agent register, with its
// type and labels, and no other.
func TestMetricsDocumented(t *testing.T) {
	all := registered(t)
	doc, err := os.ReadFile(metricsDoc)
	if err != nil {
		t.Fatal(err)
	}
	documented := map[string]bool{}
	for l := range strings.SplitSeq(string(doc), "\n") {
		m := docRowRE.FindStringSubmatch(strings.TrimSpace(l))
		if m == nil {
			if strings.HasPrefix(l, "| `von_") {
				t.Errorf("docs/metrics.md: a metric row not in the form | `name` | type | `label`, ... | meaning |: %s", l)
			}
			continue
		}
		name, typ := m[1], m[2]
		documented[name] = true
		reg, ok := all[name]
		if !ok {
			t.Errorf("docs/metrics.md documents %s, which the code does not register", name)
			continue
		}
		if reg.typ != "" && reg.typ != typ {
			t.Errorf("docs/metrics.md: %s is a %s, documented as a %s", name, reg.typ, typ)
		}
		if typ == "counter" && !strings.HasSuffix(name, "_total") || typ != "counter" && strings.HasSuffix(name, "_total") {
			t.Errorf("docs/metrics.md: %s documented as a %s", name, typ)
		}
		var labels []string
		for _, c := range strings.Split(m[3], ",") {
			if c = strings.Trim(strings.TrimSpace(c), "`"); c != "" && c != "—" {
				labels = append(labels, c)
			}
		}
		sort.Strings(labels)
		if reg.source != "etcd" && reg.source != "prometheus" && !slices.Equal(labels, sortedKeys(reg.labels)) {
			t.Errorf("docs/metrics.md: %s has labels %v, documented as %v", name, sortedKeys(reg.labels), labels)
		}
	}
	for name, m := range all {
		if (m.source == "manager" || m.source == "agent") && !documented[name] {
			t.Errorf("%s (%s) is not documented in docs/metrics.md", name, m.source)
		}
	}
}
