// The notification secrets in a Key Vault, read by the app through Key Vault references; the app's
// identity may read them (Key Vault Secrets User) before any app setting refers to them.

param location string
param tags object
param token string
param identityPrincipalId string
@allowed(['default', 'recover'])
param createMode string
@secure()
param notificationClientState string
@secure()
param notificationFunctionKey string

var keyVaultSecretsUser = '4633458b-17de-408a-b874-0445c86b69e6'

resource vault 'Microsoft.KeyVault/vaults@2023-07-01' = {
  //checkov:skip=CKV_AZURE_109:App Service resolves Key Vault references from shared outbound addresses; without VNet integration a vault firewall breaks them. Access is Entra RBAC only
  //checkov:skip=CKV_AZURE_189:as CKV_AZURE_109: the public endpoint stays, reachable with an Entra token and the Secrets User role only
  name: 'kv-upg-${take(token, 15)}'
  location: location
  tags: tags
  properties: {
    tenantId: subscription().tenantId
    sku: { family: 'A', name: 'standard' }
    enableRbacAuthorization: true
    enableSoftDelete: true
    softDeleteRetentionInDays: 7
    enablePurgeProtection: true // after `azd down`, the next `azd up` recovers the vault (createMode)
    createMode: createMode
    publicNetworkAccess: 'Enabled'
    networkAcls: { bypass: 'AzureServices', defaultAction: 'Allow' }
  }
}

resource clientState 'Microsoft.KeyVault/vaults/secrets@2023-07-01' = {
  //checkov:skip=CKV_AZURE_41:must equal the clientState of the live Graph subscriptions; it is rotated by re-provisioning, an expiry date would rotate nothing and break notifications
  parent: vault
  name: 'notification-client-state'
  properties: { value: notificationClientState, contentType: 'text/plain' }
}

resource functionKey 'Microsoft.KeyVault/vaults/secrets@2023-07-01' = {
  //checkov:skip=CKV_AZURE_41:must equal the function key in the Graph notification URL; rotated by re-provisioning, an expiry date would rotate nothing and break notifications
  parent: vault
  name: 'notification-function-key'
  properties: { value: notificationFunctionKey, contentType: 'text/plain' }
}

resource secretsUser 'Microsoft.Authorization/roleAssignments@2022-04-01' = {
  name: guid(vault.id, identityPrincipalId, keyVaultSecretsUser)
  scope: vault
  properties: {
    roleDefinitionId: subscriptionResourceId('Microsoft.Authorization/roleDefinitions', keyVaultSecretsUser)
    principalId: identityPrincipalId
    principalType: 'ServicePrincipal'
  }
}

output name string = vault.name
output clientStateUri string = clientState.properties.secretUri
output functionKeyUri string = functionKey.properties.secretUri
