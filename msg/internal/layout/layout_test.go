package layout

import "testing"

func TestParseDurable(t *testing.T) {
	for _, c := range []struct{ consumer, topic, part string }{
		{"billing", "orders.placed", "7"},
		{"a-b", "t_x.y_z", "u"},
		{"c", "t", "15"},
	} {
		name := DurableName(c.consumer, c.topic, c.part)
		consumer, topic, part, ok := ParseDurable(name)
		if !ok || consumer != c.consumer || topic != c.topic || part != c.part {
			t.Errorf("ParseDurable(%q) = %q, %q, %q, %v", name, consumer, topic, part, ok)
		}
	}
	for _, name := range []string{"", "x", "_a_b", "a__b", "a_b_", "ab"} {
		if _, _, _, ok := ParseDurable(name); ok {
			t.Errorf("ParseDurable(%q) accepted", name)
		}
	}
}
