package main

import (
	cronbinding "github.com/dapr/components-contrib/bindings/cron"
	localstoragebinding "github.com/dapr/components-contrib/bindings/localstorage"
	redisconfiguration "github.com/dapr/components-contrib/configuration/redis"
	echoconversation "github.com/dapr/components-contrib/conversation/echo"
	openaiconversation "github.com/dapr/components-contrib/conversation/openai"
	localstoragecrypto "github.com/dapr/components-contrib/crypto/localstorage"
	redislock "github.com/dapr/components-contrib/lock/redis"
	mdnsresolver "github.com/dapr/components-contrib/nameresolution/mdns"
	sqliteresolver "github.com/dapr/components-contrib/nameresolution/sqlite"
	inmemorypubsub "github.com/dapr/components-contrib/pubsub/in-memory"
	redispubsub "github.com/dapr/components-contrib/pubsub/redis"
	envsecretstore "github.com/dapr/components-contrib/secretstores/local/env"
	filesecretstore "github.com/dapr/components-contrib/secretstores/local/file"
	inmemorystate "github.com/dapr/components-contrib/state/in-memory"
	redisstate "github.com/dapr/components-contrib/state/redis"
	sqlitestate "github.com/dapr/components-contrib/state/sqlite"

	bindingsloader "github.com/dapr/dapr/pkg/components/bindings"
	configurationloader "github.com/dapr/dapr/pkg/components/configuration"
	conversationloader "github.com/dapr/dapr/pkg/components/conversation"
	cryptoloader "github.com/dapr/dapr/pkg/components/crypto"
	lockloader "github.com/dapr/dapr/pkg/components/lock"
	nrloader "github.com/dapr/dapr/pkg/components/nameresolution"
	pubsubloader "github.com/dapr/dapr/pkg/components/pubsub"
	secretstoresloader "github.com/dapr/dapr/pkg/components/secretstores"
	stateloader "github.com/dapr/dapr/pkg/components/state"
)

// The component types the dev sidecar implements, under the names daprd gives them, so one
// components folder loads in both.
func init() {
	stateloader.DefaultRegistry.RegisterComponent(inmemorystate.NewInMemoryStateStore, "in-memory")
	stateloader.DefaultRegistry.RegisterComponent(sqlitestate.NewSQLiteStateStore, "sqlite", "sqlite3")
	stateloader.DefaultRegistry.RegisterComponent(redisstate.NewRedisStateStore, "redis")

	pubsubloader.DefaultRegistry.RegisterComponent(inmemorypubsub.New, "in-memory")
	pubsubloader.DefaultRegistry.RegisterComponent(redispubsub.NewRedisStreams, "redis")

	conversationloader.DefaultRegistry.RegisterComponent(echoconversation.NewEcho, "echo")
	conversationloader.DefaultRegistry.RegisterComponent(openaiconversation.NewOpenAI, "openai")

	secretstoresloader.DefaultRegistry.RegisterComponent(envsecretstore.NewEnvSecretStore, "local.env")
	secretstoresloader.DefaultRegistry.RegisterComponent(filesecretstore.NewLocalSecretStore, "local.file")

	configurationloader.DefaultRegistry.RegisterComponent(redisconfiguration.NewRedisConfigurationStore, "redis")
	lockloader.DefaultRegistry.RegisterComponent(redislock.NewStandaloneRedisLock, "redis")
	cryptoloader.DefaultRegistry.RegisterComponent(localstoragecrypto.NewLocalStorageCrypto, "dapr.localstorage")

	bindingsloader.DefaultRegistry.RegisterInputBinding(cronbinding.NewCron, "cron")
	bindingsloader.DefaultRegistry.RegisterOutputBinding(localstoragebinding.NewLocalStorage, "localstorage")

	nrloader.DefaultRegistry.RegisterComponent(mdnsresolver.NewResolver, "mdns")
	nrloader.DefaultRegistry.RegisterComponent(sqliteresolver.NewResolver, "sqlite")
}
