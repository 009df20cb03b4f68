//go:build tools

// Package crdgen pins the module whose types controller-gen turns into the ServiceMonitor CRD.
package crdgen

import _ "github.com/prometheus-operator/prometheus-operator/pkg/apis/monitoring/v1"
