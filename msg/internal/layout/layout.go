package layout

import "strings"

// DurableName returns the name of the JetStream consumer that serves
// consumer's handlers for one partition (a decimal number or "u") of
// topic. The parts cannot run together: consumer names have no '_',
// partitions neither, and '.' in the topic becomes '~', which topics do
// not contain.
func DurableName(consumer, topic, part string) string {
	return consumer + "_" + strings.ReplaceAll(topic, ".", "~") + "_" + part
}

// ParseDurable splits a name made by DurableName; ok is false for any
// other name.
func ParseDurable(name string) (consumer, topic, part string, ok bool) {
	first, last := strings.IndexByte(name, '_'), strings.LastIndexByte(name, '_')
	if first <= 0 || last <= first+1 || last == len(name)-1 {
		return "", "", "", false
	}
	return name[:first], strings.ReplaceAll(name[first+1:last], "~", "."), name[last+1:], true
}
