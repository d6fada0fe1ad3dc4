// Command daprd is Dapr's own sidecar (github.com/dapr/dapr/cmd/daprd/app), linked with only the
// components this project's tests, samples and users' typical components folders need.
//
// Dapr's cmd/daprd/components package registers components from files guarded by the build tags
// "allcomponents" or "stablecomponents" and panics when neither is set. Building all of them
// costs ~140 components' dependency trees (cloud SDKs, Kafka, databases); build.py instead
// replaces that package's no-tag file with an empty one through `go build -overlay`, and the
// components below register themselves the same way Dapr's own files do.
package main

import "github.com/dapr/dapr/cmd/daprd/app"

func main() {
	app.Run()
}
