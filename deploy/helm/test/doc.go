// Package test checks the confgate Helm chart (deploy/helm/confgate): it
// renders the chart with helm for several value sets, decodes every
// document strictly into its Kubernetes or prometheus-operator API type
// (an unknown or duplicate field is an error, as for the API server's
// strict field validation), and checks the wiring that matters in
// production: probes, the drain, flags that confgate serve really has,
// selectors, Secrets and the security context. It is a module of its own
// so that the Kubernetes API types never enter confgate's go.mod.
// scripts/deploy-test.sh installs the pinned helm and runs it.
package test
