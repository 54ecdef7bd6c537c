package msg

import "time"

// WithAfterCommit calls f after a handler's transaction committed and
// before the ack; if f returns true the ack is skipped, as a crash there
// would skip it.
func WithAfterCommit(f func(d *Delivery) bool) Option {
	return optionFunc(func(c *config) { c.afterCommit = f })
}

// WithCleanEvery sets how often a Subscription cleans its inbox.
func WithCleanEvery(d time.Duration) Option {
	return optionFunc(func(c *config) { c.cleanEvery = d })
}

// DurableNames returns the JetStream consumers of consumer on topic.
func DurableNames(consumer, topic string) []string {
	var out []string
	for _, p := range partitions() {
		out = append(out, durableName(consumer, topic, p))
	}
	return out
}

// Partition returns a key's partition token.
var Partition = partition
