package codegen

import (
	"strings"
	"testing"

	"github.com/concordrpc/concord/msg"
)

// TestTopicRulesAreTheRuntimes checks that the generate-time topic check
// accepts exactly the topics msg.CheckTopic accepts, so that a topic that
// generates is one the runtime takes.
func TestTopicRulesAreTheRuntimes(t *testing.T) {
	t.Parallel()
	topics := []string{
		"", ".", "a", "a.b", "orders.placed", "orders..placed", ".orders", "orders.",
		"Orders", "orders.*", "orders.>", "a b", "a/b", "a~b", "a_b-c.9", "é", "a\x00b",
		strings.Repeat("a", msg.MaxTopicLen), strings.Repeat("a", msg.MaxTopicLen+1),
		strings.Repeat("a.", msg.MaxTopicLen/2-1) + "ab",
	}
	for _, topic := range topics {
		if got, want := checkTopic(topic) == nil, msg.CheckTopic(topic) == nil; got != want {
			t.Errorf("topic %q: accepted at generate time: %v, by msg.CheckTopic: %v", topic, got, want)
		}
	}
	if maxTopicLen != msg.MaxTopicLen {
		t.Errorf("maxTopicLen is %d, msg.MaxTopicLen %d", maxTopicLen, msg.MaxTopicLen)
	}
}
