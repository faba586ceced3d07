package runtime

import (
	"bufio"
	"encoding/json"
	"os"
	"slices"
	"strings"
	"testing"

	"gopkg.in/yaml.v3"

	"github.com/refbridge/refbridge/shared/rfsim"
)

// alarmMetric is a custom metric an alarm of template.yaml watches.
type alarmMetric struct{ Name, Function string }

// alarmMetrics reads the alarms on the refbridge namespace, plain and metric-math ones.
func alarmMetrics(t *testing.T) []alarmMetric {
	t.Helper()
	raw, err := os.ReadFile("../../template.yaml")
	if err != nil {
		t.Fatal(err)
	}
	type metric struct {
		Namespace  string `yaml:"Namespace"`
		MetricName string `yaml:"MetricName"`
		Dimensions []struct {
			Name  string `yaml:"Name"`
			Value string `yaml:"Value"`
		} `yaml:"Dimensions"`
	}
	var tpl struct {
		Resources map[string]struct {
			Type       string `yaml:"Type"`
			Properties struct {
				metric  `yaml:",inline"`
				Metrics []struct {
					MetricStat struct {
						Metric metric `yaml:"Metric"`
					} `yaml:"MetricStat"`
				} `yaml:"Metrics"`
			} `yaml:"Properties"`
		} `yaml:"Resources"`
	}
	if err := yaml.Unmarshal(raw, &tpl); err != nil {
		t.Fatal(err)
	}
	var out []alarmMetric
	add := func(m metric) {
		if m.Namespace != "refbridge" {
			return
		}
		if len(m.Dimensions) != 1 || m.Dimensions[0].Name != "Function" {
			t.Errorf("alarm on %s: dimensions %+v, want Function only (what the code writes)", m.MetricName, m.Dimensions)
			return
		}
		out = append(out, alarmMetric{m.MetricName, m.Dimensions[0].Value})
	}
	for _, r := range tpl.Resources {
		if r.Type != "AWS::CloudWatch::Alarm" {
			continue
		}
		add(r.Properties.metric)
		for _, m := range r.Properties.Metrics {
			add(m.MetricStat.Metric)
		}
	}
	return out
}

// emitted lists the metrics in a bootstrap's EMF lines whose only dimension is Function.
func emitted(logs string) map[alarmMetric]bool {
	got := map[alarmMetric]bool{}
	sc := bufio.NewScanner(strings.NewReader(logs))
	sc.Buffer(nil, 1<<20)
	for sc.Scan() {
		var line struct {
			Function string `json:"Function"`
			AWS      struct {
				CloudWatchMetrics []struct {
					Namespace  string              `json:"Namespace"`
					Dimensions [][]string          `json:"Dimensions"`
					Metrics    []map[string]string `json:"Metrics"`
				} `json:"CloudWatchMetrics"`
			} `json:"_aws"`
		}
		if json.Unmarshal(sc.Bytes(), &line) != nil {
			continue
		}
		for _, d := range line.AWS.CloudWatchMetrics {
			if d.Namespace != "refbridge" || len(d.Dimensions) != 1 || !slices.Equal(d.Dimensions[0], []string{"Function"}) {
				continue
			}
			for _, m := range d.Metrics {
				got[alarmMetric{m["Name"], line.Function}] = true
			}
		}
	}
	return got
}

// Every custom metric an alarm watches is one the real bootstraps write, under the same name
// and dimension: a renamed metric would otherwise leave its alarm silent forever.
func TestAlarmMetricsAreEmitted(t *testing.T) {
	t.Parallel()
	want := alarmMetrics(t)
	if len(want) < 7 {
		t.Fatalf("only %d custom alarm metrics found in template.yaml: %v", len(want), want)
	}
	got := map[alarmMetric]bool{}
	collect := func(logs string) {
		for m := range emitted(logs) {
			got[m] = true
		}
	}

	w := newWorld(t)
	// RF answers one 429 (and then normally): stripe-webhook counts it, waits and succeeds.
	if _, err := w.sim.Server.AddFault(rfsim.Fault{Match: "*", Status: 429, Count: 1}); err != nil {
		t.Fatal(err)
	}
	stripe := start(t, "stripe-webhook", w.env, nil)
	paid := fixture(t, "stripe", "invoice.paid.2024-06-20.json")
	if a := call(t, stripe, stripeEvent(t, paid, stripeSecret), timeout); a.Status != 200 {
		t.Fatalf("invoice.paid through a 429: %d %+v", a.Status, a.Body)
	}
	if a := call(t, stripe, stripeEvent(t, paid, "whsec_someone_else"), timeout); a.Status != 400 {
		t.Fatalf("bad signature: %d", a.Status)
	}
	rf := start(t, "rf-webhook", w.env, nil)
	body := fixture(t, "rf", "lead-created.json")
	if a := call(t, rf, urlEvent(t, "/rf/webhook/lead-created", map[string]string{"x-webhook-secret": "guess"}, body), timeout); a.Status != 401 {
		t.Fatalf("wrong secret: %d", a.Status)
	}
	sweep := start(t, "reward-sweep", w.env, nil)
	if res, err := sweep.Invoke(t.Context(), fixture(t, "sweep", "schedule.json"), timeout); err != nil || res.Error != nil {
		t.Fatalf("sweep: %v %v", err, res.Error)
	}
	for _, rt := range []interface {
		Stop()
		Logs() string
	}{stripe, rf, sweep} {
		rt.Stop() // a line written just before an answer is in Logs only after Stop
		collect(rt.Logs())
	}

	// RFRateLimited is summed over the three functions by one alarm: one of them suffices.
	rateLimited := false
	for _, m := range want {
		if m.Name == "RFRateLimited" {
			rateLimited = rateLimited || got[m]
			continue
		}
		if !got[m] {
			t.Errorf("an alarm watches %s of %s, which no run of the bootstrap wrote (got %v)", m.Name, m.Function, got)
		}
	}
	if !rateLimited {
		t.Errorf("no bootstrap wrote RFRateLimited after RF's 429 (got %v)", got)
	}
}
