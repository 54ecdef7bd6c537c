package main

import (
	"fmt"
	"os"

	"github.com/concordrpc/concord/codegen"
	"github.com/concordrpc/concord/rpc"
)

func main() {
	if len(os.Args) == 2 && os.Args[1] == "--version" {
		fmt.Println(rpc.Version)
		return
	}
	codegen.Options().Run(codegen.Generate)
}
