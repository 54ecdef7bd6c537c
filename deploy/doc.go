// Package deploy holds Concord's deployment recipes and their tests:
// Kubernetes manifests under kubernetes/ (kubectl apply -k
// deploy/kubernetes) and the image of `concord node` (node.Dockerfile).
//
// It is a module of its own so that k8s.io/api, which only its tests use,
// stays out of what Concord's users download. Its tests decode every
// manifest strictly into the k8s.io/api types and check that the
// manifests agree with each other and with what the binaries serve.
package deploy
