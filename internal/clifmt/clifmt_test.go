package clifmt

import (
	"bytes"
	"testing"
)

func TestParse(t *testing.T) {
	for _, tc := range []struct {
		in   string
		want Format
		ok   bool
	}{{"", Table, true}, {"json", JSON, true}, {"YAML", YAML, true}, {"dot", "", false}, {"xml", "", false}} {
		got, err := Parse(tc.in, Common...)
		if (err == nil) != tc.ok || got != tc.want {
			t.Errorf("Parse(%q) = %q, %v", tc.in, got, err)
		}
	}
	if f, err := Parse("dot", append(Common, Dot)...); err != nil || f != Dot {
		t.Errorf("dot: %q %v", f, err)
	}
}

func TestWriteSameFields(t *testing.T) {
	v := struct {
		Total int      `json:"total_cost"`
		Names []string `json:"names"`
	}{3, []string{"a"}}
	var j, y bytes.Buffer
	if err := Write(&j, JSON, v); err != nil {
		t.Fatal(err)
	}
	if err := Write(&y, YAML, v); err != nil {
		t.Fatal(err)
	}
	if j.String() != "{\n  \"total_cost\": 3,\n  \"names\": [\n    \"a\"\n  ]\n}\n" {
		t.Errorf("json %q", j.String())
	}
	if y.String() != "names:\n- a\ntotal_cost: 3\n" {
		t.Errorf("yaml %q", y.String())
	}
	if err := Write(&y, Table, v); err == nil {
		t.Error("table is not structured")
	}
}
