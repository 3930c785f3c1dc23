# azd preprovision hook (Windows): the same as preprovision.sh. API_AUTH=entra creates the operator
# API's app registration once (roles Upgrades.Run, Upgrades.Read); a soft-deleted Key Vault of this
# environment is recovered instead of colliding.
$ErrorActionPreference = 'Stop'
$envName = $env:AZURE_ENV_NAME
if (-not $envName) { throw 'Run through azd.' }
$rolesFile = Join-Path $PSScriptRoot 'api-app-roles.json'

if (($env:API_AUTH ?? 'key').ToLower() -eq 'entra') {
    $clientId = $env:API_AUTH_CLIENT_ID
    if ($clientId) {
        az ad app show --id $clientId --query appId --output tsv *> $null
        if ($LASTEXITCODE -ne 0) { throw "API_AUTH_CLIENT_ID=$clientId names no app registration in this tenant." }
    }
    else {
        $name = "teams-app-upgrader-api-$envName"
        $clientId = az ad app list --display-name $name --query '[0].appId' --output tsv
        if (-not $clientId) {
            $clientId = az ad app create --display-name $name --sign-in-audience AzureADMyOrg `
                --app-roles "@$rolesFile" --query appId --output tsv
            Write-Host "Created the app registration $name ($clientId) with the roles Upgrades.Run and Upgrades.Read."
        }
        az ad app update --id $clientId --identifier-uris "api://$clientId" --set api.requestedAccessTokenVersion=2
        az ad sp show --id $clientId --query id --output tsv *> $null
        if ($LASTEXITCODE -ne 0) { az ad sp create --id $clientId --output none }
        azd env set API_AUTH_CLIENT_ID $clientId
    }
    Write-Host "Operator sign-in: Entra ID, API app registration $clientId (assign Upgrades.Run / Upgrades.Read to people and pipelines)."
}

$mode = 'default'
$vault = $env:AZURE_KEY_VAULT_NAME
if ($vault -and (az keyvault list-deleted --resource-type vault --query "[?name=='$vault'].name" --output tsv)) {
    $mode = 'recover'
    Write-Host "Key Vault $vault is soft-deleted from an earlier deployment of this environment: it will be recovered."
}
azd env set KEY_VAULT_CREATE_MODE $mode
