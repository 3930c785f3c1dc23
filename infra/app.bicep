// Resource-group scope: everything the app needs. No connection strings, keys or shared-key access:
// the function app reaches storage, Key Vault and Application Insights with its user-assigned identity.

param location string
param tags object
param token string
param principalId string
param principalType string
param apiAuth string
param apiAuthClientId string
param keyVaultCreateMode string
param graphMaxRps string
param upgradeScopes string
param discoveryGroupId string
param discoveryMode string
param watchedAppIds string
param watchOrgApps string
param rollout string
param catalogWait string
param runRetention string
param pausedAlertAfter string
param graphBaseUrl string
param upgradeTargetsPerMessage string
param discoveryUsersPerStep string
param graphInlineRetrySeconds string
param upgradeMaxAttempts string
@secure()
param notificationClientState string
@secure()
param notificationFunctionKey string
param alertEmail string
param maximumInstanceCount int

var appName = 'func-upgrader-${token}'
var notificationsEnabled = !empty(notificationClientState) && !empty(notificationFunctionKey)
var deploymentContainer = 'app-package-${take(token, 7)}'
var authority = environment().authentication.loginEndpoint // this cloud's (the app drops the trailing slash)

// Role definition ids (built-in roles)
var roles = {
  storageBlobDataOwner: 'b7e6dc6d-f1e8-4753-8033-0f276bb0955b'
  storageQueueDataContributor: '974c5e8b-45b9-4653-ba55-5f855dd0fb88'
  storageTableDataContributor: '0a9a7e1f-b9d0-4cc4-a60d-0319b160aaa3'
  monitoringMetricsPublisher: '3913510d-42f4-4e42-8a64-420c390055eb'
}

resource identity 'Microsoft.ManagedIdentity/userAssignedIdentities@2023-01-31' = {
  name: 'id-upgrader-${token}'
  location: location
  tags: tags
}

// ---- storage: deployment package (blob), queues and tables; shared keys off -----------------------

resource storage 'Microsoft.Storage/storageAccounts@2023-05-01' = {
  //checkov:skip=CKV_AZURE_35:Flex Consumption without VNet integration reaches host storage and the deployment package over the public endpoint (Functions is no trusted service for the storage firewall); access is Entra ID only, shared keys are off
  //checkov:skip=CKV_AZURE_59:as CKV_AZURE_35: the app, azd deploy and the developer need the public endpoint; no keys, no anonymous blobs, TLS 1.2
  //checkov:skip=CKV_AZURE_206:holds only queues, run state and a redeployable package of a single-region app; geo-replication would add cost without failover
  //checkov:skip=CKV_AZURE_43:false positive: checkov cannot evaluate the interpolation; the name is 'stupgrader' plus 13 lowercase alphanumerics (23 characters)
  name: 'stupgrader${take(token, 13)}'
  location: location
  tags: tags
  kind: 'StorageV2'
  sku: { name: 'Standard_LRS' }
  properties: {
    allowSharedKeyAccess: false
    allowBlobPublicAccess: false
    minimumTlsVersion: 'TLS1_2'
    supportsHttpsTrafficOnly: true
    dnsEndpointType: 'Standard'
    publicNetworkAccess: 'Enabled'
    networkAcls: { bypass: 'AzureServices', defaultAction: 'Allow' }
  }

  resource blobServices 'blobServices' = {
    name: 'default'
    resource packages 'containers' = {
      name: deploymentContainer
      properties: { publicAccess: 'None' }
    }
  }

  resource queueServices 'queueServices' = {
    name: 'default'
  }

  resource tableServices 'tableServices' = {
    name: 'default'
  }
}

resource blobOwner 'Microsoft.Authorization/roleAssignments@2022-04-01' = {
  name: guid(storage.id, identity.id, roles.storageBlobDataOwner)
  scope: storage
  properties: {
    roleDefinitionId: subscriptionResourceId('Microsoft.Authorization/roleDefinitions', roles.storageBlobDataOwner)
    principalId: identity.properties.principalId
    principalType: 'ServicePrincipal'
  }
}

resource queueContributor 'Microsoft.Authorization/roleAssignments@2022-04-01' = {
  name: guid(storage.id, identity.id, roles.storageQueueDataContributor)
  scope: storage
  properties: {
    roleDefinitionId: subscriptionResourceId('Microsoft.Authorization/roleDefinitions', roles.storageQueueDataContributor)
    principalId: identity.properties.principalId
    principalType: 'ServicePrincipal'
  }
}

resource tableContributor 'Microsoft.Authorization/roleAssignments@2022-04-01' = {
  name: guid(storage.id, identity.id, roles.storageTableDataContributor)
  scope: storage
  properties: {
    roleDefinitionId: subscriptionResourceId('Microsoft.Authorization/roleDefinitions', roles.storageTableDataContributor)
    principalId: identity.properties.principalId
    principalType: 'ServicePrincipal'
  }
}

// The developer running azd may read run state and queues (e.g. with Storage Explorer), and run the
// local host against this account (it keeps its locks and timer state in blobs)
resource developerBlobs 'Microsoft.Authorization/roleAssignments@2022-04-01' = if (!empty(principalId)) {
  name: guid(storage.id, principalId, roles.storageBlobDataOwner)
  scope: storage
  properties: {
    roleDefinitionId: subscriptionResourceId('Microsoft.Authorization/roleDefinitions', roles.storageBlobDataOwner)
    principalId: principalId
    principalType: principalType
  }
}

resource developerQueues 'Microsoft.Authorization/roleAssignments@2022-04-01' = if (!empty(principalId)) {
  name: guid(storage.id, principalId, roles.storageQueueDataContributor)
  scope: storage
  properties: {
    roleDefinitionId: subscriptionResourceId('Microsoft.Authorization/roleDefinitions', roles.storageQueueDataContributor)
    principalId: principalId
    principalType: principalType
  }
}

resource developerTables 'Microsoft.Authorization/roleAssignments@2022-04-01' = if (!empty(principalId)) {
  name: guid(storage.id, principalId, roles.storageTableDataContributor)
  scope: storage
  properties: {
    roleDefinitionId: subscriptionResourceId('Microsoft.Authorization/roleDefinitions', roles.storageTableDataContributor)
    principalId: principalId
    principalType: principalType
  }
}

// ---- monitoring: Log Analytics + Application Insights with local (key) auth disabled ---------------

resource workspace 'Microsoft.OperationalInsights/workspaces@2023-09-01' = {
  name: 'log-upgrader-${token}'
  location: location
  tags: tags
  properties: any({
    retentionInDays: 30
    features: { searchVersion: 1 }
    sku: { name: 'PerGB2018' }
  })
}

resource appInsights 'Microsoft.Insights/components@2020-02-02' = {
  name: 'appi-upgrader-${token}'
  location: location
  tags: tags
  kind: 'web'
  properties: {
    Application_Type: 'web'
    WorkspaceResourceId: workspace.id
    DisableLocalAuth: true
  }
}

resource metricsPublisher 'Microsoft.Authorization/roleAssignments@2022-04-01' = {
  name: guid(appInsights.id, identity.id, roles.monitoringMetricsPublisher)
  scope: appInsights
  properties: {
    roleDefinitionId: subscriptionResourceId('Microsoft.Authorization/roleDefinitions', roles.monitoringMetricsPublisher)
    principalId: identity.properties.principalId
    principalType: 'ServicePrincipal'
  }
}

module monitoring 'monitoring.bicep' = {
  name: 'monitoring'
  params: {
    location: location
    tags: tags
    token: token
    workspaceName: workspace.name
    appInsightsId: appInsights.id
    alertEmail: alertEmail
  }
}

// ---- Key Vault: the notification secrets, read by the app through Key Vault references -------------

module secrets 'secrets.bicep' = if (notificationsEnabled) {
  name: 'secrets'
  params: {
    location: location
    tags: tags
    token: token
    identityPrincipalId: identity.properties.principalId
    createMode: keyVaultCreateMode
    notificationClientState: notificationClientState
    notificationFunctionKey: notificationFunctionKey
  }
}

// ---- the function app on Flex Consumption --------------------------------------------------------------

resource plan 'Microsoft.Web/serverfarms@2024-04-01' = {
  //checkov:skip=CKV_AZURE_225:zone-redundant Flex Consumption keeps at least two always-ready instances billed around the clock, in some regions only; a queue-driven batch app rides out a zone outage
  name: 'plan-upgrader-${token}'
  location: location
  tags: tags
  kind: 'functionapp'
  sku: { tier: 'FlexConsumption', name: 'FC1' }
  properties: { reserved: true }
}

var notificationSettings = notificationsEnabled ? {
  NOTIFICATION_CLIENT_STATE: '@Microsoft.KeyVault(SecretUri=${secrets!.outputs.clientStateUri})'
  NOTIFICATION_FUNCTION_KEY: '@Microsoft.KeyVault(SecretUri=${secrets!.outputs.functionKeyUri})'
} : {}

resource functionApp 'Microsoft.Web/sites@2024-04-01' = {
  //checkov:skip=CKV_AZURE_222:Graph change notifications, the operator API and azd deploy's publish endpoint come from the internet; requests carry function keys, clientState or Entra tokens
  //checkov:skip=CKV_AZURE_17:neither Graph nor the operator API presents client certificates; requests are authenticated by function keys, clientState or Entra tokens
  //checkov:skip=CKV_AZURE_212:Flex Consumption scales instances itself (functionAppConfig.scaleAndConcurrency); numberOfWorkers does not apply
  //checkov:skip=CKV_AZURE_78:Flex Consumption deploys only from its blob container and does not take siteConfig.ftpsState; there is no FTP publishing to disable
  name: appName
  location: location
  tags: union(tags, { 'azd-service-name': 'api' })
  kind: 'functionapp,linux'
  identity: {
    type: 'UserAssigned'
    userAssignedIdentities: { '${identity.id}': {} }
  }
  properties: {
    serverFarmId: plan.id
    httpsOnly: true
    keyVaultReferenceIdentity: identity.id
    siteConfig: {
      minTlsVersion: '1.2'
      http20Enabled: true
      healthCheckPath: '/api/health' // anonymous: settings load and storage answers
    }
    functionAppConfig: {
      deployment: {
        storage: {
          type: 'blobContainer'
          value: '${storage.properties.primaryEndpoints.blob}${deploymentContainer}'
          authentication: {
            type: 'UserAssignedIdentity'
            userAssignedIdentityResourceId: identity.id
          }
        }
      }
      scaleAndConcurrency: {
        // Graph's validation request must be answered within 10 s and each notification within 3 s, and no timer
        // keeps the HTTP group warm: with notifications, one instance of it is always ready (billed around the clock)
        alwaysReady: notificationsEnabled ? [{ name: 'http', instanceCount: 1 }] : []
        maximumInstanceCount: maximumInstanceCount
        instanceMemoryMB: 2048
      }
      runtime: {
        name: 'python'
        version: '3.11'
      }
    }
  }

  resource appSettings 'config' = {
    // These checks are written for config 'web' or 'authsettings': on 'appsettings' they are false positives.
    // A skip in this block lies inside functionApp's lines too, so it skips the same ID there as well.
    //checkov:skip=CKV_AZURE_13:false positive (looks for config/authsettings); the host checks function keys and the app Entra ID tokens (API_AUTH), App Service Authentication is not relied on
    //checkov:skip=CKV_AZURE_63:false positive (HTTP logging is a config/web property); telemetry goes to Application Insights
    //checkov:skip=CKV_AZURE_65:false positive (detailed error logging is a config/web property)
    //checkov:skip=CKV_AZURE_66:false positive (failed request tracing is a config/web property)
    //checkov:skip=CKV_AZURE_80:false positive; a Python app has no .NET Framework version
    //checkov:skip=CKV_AZURE_88:false positive; Flex Consumption mounts no Azure Files share
    //checkov:skip=CKV_AZURE_222:false positive here; the site itself stays public (see functionApp)
    name: 'appsettings'
    properties: union({
      // storage, identity-based only
      AzureWebJobsStorage__credential: 'managedidentity'
      AzureWebJobsStorage__clientId: identity.properties.clientId
      AzureWebJobsStorage__blobServiceUri: storage.properties.primaryEndpoints.blob
      AzureWebJobsStorage__queueServiceUri: storage.properties.primaryEndpoints.queue
      AzureWebJobsStorage__tableServiceUri: storage.properties.primaryEndpoints.table
      // monitoring: OpenTelemetry from the Python worker, Entra-authenticated ingestion
      APPLICATIONINSIGHTS_CONNECTION_STRING: appInsights.properties.ConnectionString
      APPLICATIONINSIGHTS_AUTHENTICATION_STRING: 'ClientId=${identity.properties.clientId};Authorization=AAD'
      PYTHON_APPLICATIONINSIGHTS_ENABLE_TELEMETRY: 'true'
      PYTHON_APPLICATIONINSIGHTS_LOGGER_NAME: 'upgrader'
      // the app
      AZURE_CLIENT_ID: identity.properties.clientId
      GRAPH_BASE_URL: graphBaseUrl
      GRAPH_MAX_RPS: graphMaxRps
      DISCOVERY_GROUP_ID: discoveryGroupId
      DISCOVERY_MODE: discoveryMode
      DISCOVERY_USERS_PER_STEP: discoveryUsersPerStep
      UPGRADE_SCOPES: upgradeScopes
      UPGRADE_TARGETS_PER_MESSAGE: upgradeTargetsPerMessage
      UPGRADE_MAX_ATTEMPTS: upgradeMaxAttempts
      GRAPH_INLINE_RETRY_SECONDS: graphInlineRetrySeconds
      WATCHED_APP_IDS: watchedAppIds
      WATCH_ORG_APPS: watchOrgApps
      ROLLOUT: rollout
      CATALOG_WAIT: catalogWait
      RUN_RETENTION: runRetention
      PAUSED_ALERT_AFTER: pausedAlertAfter
      CATALOG_WATCH_SCHEDULE: '0 */5 * * * *'
      SUBSCRIPTION_SCHEDULE: '0 7 * * * *'
      QUEUE_MONITOR_SCHEDULE: '0 * * * * *'
      RUN_KEEPER_SCHEDULE: '0 */5 * * * *'
      RETENTION_SCHEDULE: '0 30 2 * * *'
      // operator sign-in: function keys, or Entra ID tokens checked by the app
      API_AUTH: apiAuth
      API_AUTH_TENANT_ID: tenant().tenantId
      API_AUTH_CLIENT_ID: apiAuthClientId
      API_AUTH_AUTHORITY: authority
    }, notificationSettings)
    // a Key Vault reference resolved before the identity may read the secret stays the literal
    // '@Microsoft.KeyVault(...)' string (cached for up to 24 h): grant first, then set the settings
    dependsOn: [secrets]
  }

  dependsOn: [blobOwner, queueContributor, tableContributor, metricsPublisher]
}

output functionAppName string = functionApp.name
output functionAppUrl string = 'https://${functionApp.properties.defaultHostName}'
output identityPrincipalId string = identity.properties.principalId
output identityClientId string = identity.properties.clientId
output applicationInsightsName string = appInsights.name
output keyVaultName string = notificationsEnabled ? secrets!.outputs.name : ''
