// Package syncbuf holds a bytes.Buffer that is safe for concurrent use: a
// logger or a child process writes while a test reads.
package syncbuf
