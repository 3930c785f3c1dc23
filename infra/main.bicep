// Teams App Upgrader: a secretless Flex Consumption function app, its storage, identity,
// monitoring (Application Insights with Entra auth, workbook, saved queries, alerts) and,
// when notifications are enabled, a Key Vault for their secrets.
targetScope = 'subscription'

@minLength(1)
@maxLength(64)
@description('azd environment name; names and tags derive from it')
param environmentName string

@minLength(1)
@description('Azure region for every resource: one that offers Flex Consumption (az functionapp list-flexconsumption-locations)')
@allowed([
  'australiaeast'
  'australiasoutheast'
  'brazilsouth'
  'canadacentral'
  'centralindia'
  'centralus'
  'eastasia'
  'eastus'
  'eastus2'
  'francecentral'
  'germanywestcentral'
  'italynorth'
  'japaneast'
  'koreacentral'
  'northcentralus'
  'northeurope'
  'norwayeast'
  'southafricanorth'
  'southcentralus'
  'southeastasia'
  'southindia'
  'spaincentral'
  'swedencentral'
  'uaenorth'
  'uksouth'
  'ukwest'
  'westcentralus'
  'westeurope'
  'westus'
  'westus2'
  'westus3'
])
@metadata({ azd: { type: 'location' } })
param location string

@description('Object id of the user running azd: gets data access to the storage account, for local runs against it')
param principalId string = ''

@allowed(['User', 'ServicePrincipal', 'Group'])
@description('What principalId is: azd passes AZURE_PRINCIPAL_TYPE (ServicePrincipal when a pipeline runs azd)')
param principalType string = 'User'

@allowed(['key', 'entra'])
@description('API_AUTH: how operators sign in to the API: function keys, or Entra ID tokens with app roles')
param apiAuth string = 'key'

@description('API_AUTH_CLIENT_ID: the API\'s app registration (created by the preprovision hook when apiAuth is entra)')
param apiAuthClientId string = ''

@allowed(['default', 'recover'])
@description('recover: the Key Vault of this environment is soft-deleted from an earlier deployment (set by the preprovision hook)')
param keyVaultCreateMode string = 'default'

@description('GRAPH_MAX_RPS: requests per second the whole app sends to one Graph throttling bucket (Graph allows about 30)')
param graphMaxRps string = '25'

@description('UPGRADE_SCOPES: where to upgrade the app, comma-separated: chat, team, personal (grant each scope\'s Graph permissions first)')
param upgradeScopes string = 'chat'

@description('DISCOVERY_GROUP_ID: discover only among this group\'s transitive members (empty: all users)')
param discoveryGroupId string = ''

@allowed(['auto', 'scan', 'registry'])
param discoveryMode string = 'auto'

@description('WATCHED_APP_IDS: catalog ids of the apps the catalog watcher follows, comma-separated')
param watchedAppIds string = ''

@allowed(['true', 'false'])
param watchOrgApps string = 'false'

@description('ROLLOUT: the rollout plan (JSON) of runs that name neither a rollout nor a canary; empty: no plan')
param rollout string = ''

@description('CATALOG_WAIT: how long (ISO 8601) a run waits for its version to be published in the app catalog')
param catalogWait string = 'PT48H'

@description('RUN_RETENTION: how long (ISO 8601) the target rows of a finished run are kept')
param runRetention string = 'P90D'

@description('PAUSED_ALERT_AFTER: how long (ISO 8601) a run may wait paused for an operator before it alerts')
param pausedAlertAfter string = 'PT1H'

@description('GRAPH_BASE_URL: the Microsoft Graph endpoint (another for a national cloud)')
param graphBaseUrl string = 'https://graph.microsoft.com/v1.0'

// Advanced tuning: the defaults suit Graph's documented limits
@description('UPGRADE_TARGETS_PER_MESSAGE: targets per queue message (at most 50)')
param upgradeTargetsPerMessage string = '20'

@description('DISCOVERY_USERS_PER_STEP: users per discovery step')
param discoveryUsersPerStep string = '10'

@description('GRAPH_INLINE_RETRY_SECONDS: Retry-After waits up to this long happen in the invocation; longer ones re-queue')
param graphInlineRetrySeconds string = '5'

@description('UPGRADE_MAX_ATTEMPTS: throttled or unavailable attempts per target before it fails')
param upgradeMaxAttempts string = '8'

@secure()
@description('clientState of Graph subscriptions (16-255 characters); empty: no installation notifications')
param notificationClientState string = ''

@secure()
@description('Function key the Graph notification URL carries; registered on the function by scripts/postdeploy.sh')
param notificationFunctionKey string = ''

@description('Email address for the alerts (empty: alerts without an action group)')
param alertEmail string = ''

@minValue(1)
@maxValue(1000)
@description('Most instances Flex Consumption may scale to; pacing keeps Graph traffic flat whatever this is')
param maximumInstanceCount int = 10

var tags = { 'azd-env-name': environmentName }
var token = toLower(uniqueString(subscription().id, environmentName, location))

resource rg 'Microsoft.Resources/resourceGroups@2024-03-01' = {
  name: 'rg-${environmentName}'
  location: location
  tags: tags
}

module app 'app.bicep' = {
  name: 'app'
  scope: rg
  params: {
    location: location
    tags: tags
    token: token
    principalId: principalId
    principalType: principalType
    apiAuth: apiAuth
    apiAuthClientId: apiAuthClientId
    keyVaultCreateMode: keyVaultCreateMode
    graphMaxRps: graphMaxRps
    upgradeScopes: upgradeScopes
    discoveryGroupId: discoveryGroupId
    discoveryMode: discoveryMode
    watchedAppIds: watchedAppIds
    watchOrgApps: watchOrgApps
    rollout: rollout
    catalogWait: catalogWait
    runRetention: runRetention
    pausedAlertAfter: pausedAlertAfter
    graphBaseUrl: graphBaseUrl
    upgradeTargetsPerMessage: upgradeTargetsPerMessage
    discoveryUsersPerStep: discoveryUsersPerStep
    graphInlineRetrySeconds: graphInlineRetrySeconds
    upgradeMaxAttempts: upgradeMaxAttempts
    notificationClientState: notificationClientState
    notificationFunctionKey: notificationFunctionKey
    alertEmail: alertEmail
    maximumInstanceCount: maximumInstanceCount
  }
}

output AZURE_RESOURCE_GROUP string = rg.name
output AZURE_FUNCTION_APP_NAME string = app.outputs.functionAppName
output AZURE_FUNCTION_APP_URL string = app.outputs.functionAppUrl
output MANAGED_IDENTITY_PRINCIPAL_ID string = app.outputs.identityPrincipalId
output MANAGED_IDENTITY_CLIENT_ID string = app.outputs.identityClientId
output APPLICATIONINSIGHTS_NAME string = app.outputs.applicationInsightsName
output AZURE_KEY_VAULT_NAME string = app.outputs.keyVaultName
