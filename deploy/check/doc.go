// Package check holds the tests of deploy/: the Helm chart rendered by helm
// and decoded strictly into the Kubernetes API types of one release, helm
// lint, the systemd unit (systemd-analyze verify and its hardening), the
// Prometheus rules (promtool check rules, test rules) and the Grafana
// dashboard. It is a module of its own so that helm's and Kubernetes'
// modules stay out of the node's build (and out of govulncheck's scan of
// it); `make deploy-check` runs it with the tools it builds.
package check
