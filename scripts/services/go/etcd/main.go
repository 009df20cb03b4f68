// The etcd server that kube-apiserver stores its objects in during the tests, built
// from the etcd release that k8s.io/kubernetes pins; the same entry point as etcd's
// own main.go.
package main

import (
	"os"

	"go.etcd.io/etcd/server/v3/etcdmain"
)

func main() {
	etcdmain.Main(os.Args)
}
