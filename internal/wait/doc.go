// Package wait holds the retry pacing shared by Concord's packages: a
// sleep that ends with its context, and exponential backoff with jitter.
package wait
