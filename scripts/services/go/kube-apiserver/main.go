// The kube-apiserver of k8s.io/kubernetes, built outside its repository so that the
// tests get a real API server: this is cmd/kube-apiserver/apiserver.go of the pinned
// release, as a package main cannot be imported.
package main

import (
	"os"
	_ "time/tzdata"

	"k8s.io/component-base/cli"
	_ "k8s.io/component-base/logs/json/register"
	_ "k8s.io/component-base/metrics/prometheus/clientgo"
	_ "k8s.io/component-base/metrics/prometheus/version"
	"k8s.io/kubernetes/cmd/kube-apiserver/app"
)

func main() {
	os.Exit(cli.Run(app.NewAPIServerCommand()))
}
