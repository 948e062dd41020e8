// Command etcd is upstream etcd's server entry point, built from Go modules
// because `go install go.etcd.io/etcd/server/v3` refuses the module's replace
// directives.
package main

import (
	"os"

	"go.etcd.io/etcd/server/v3/etcdmain"
)

func main() { etcdmain.Main(os.Args) }
