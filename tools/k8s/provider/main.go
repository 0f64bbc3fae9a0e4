// The provider plugin's main, as the module's own cmd/pulumi-resource-kubernetes/main.go: that package
// embeds schema-embed.json and terraform-mapping-embed.json, which its go:generate step writes and the
// module zip does not contain, so it cannot be built from the proxy. scripts/k8s-build.ts writes the
// two files here (git-ignored) from the module's schema.json (with the version set) before building.
package main

import (
	_ "embed"

	"github.com/pulumi/pulumi-kubernetes/provider/v4/pkg/provider"
	"github.com/pulumi/pulumi-kubernetes/provider/v4/pkg/version"
)

//go:embed schema-embed.json
var pulumiSchema []byte

//go:embed terraform-mapping-embed.json
var terraformMapping []byte

func main() {
	provider.Serve("kubernetes", version.Version, pulumiSchema, terraformMapping)
}
