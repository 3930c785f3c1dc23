# azd preprovision hook (Windows): the same as preprovision.sh. API_AUTH=entra creates the operator
# API's app registration once (roles Upgrades.Run, Upgrades.Read), or uses a given API_AUTH_CLIENT_ID
# without reading the directory; a soft-deleted Key Vault of this environment is recovered instead of
# colliding.
$ErrorActionPreference = 'Stop'
$envName = $env:AZURE_ENV_NAME
if (-not $envName) { throw 'Run through azd.' }
$rolesFile = Join-Path $PSScriptRoot 'api-app-roles.json'

# Runs an `az ad` command; when Entra ID refuses it, stops the provision saying so and what to do.
function Invoke-Directory {
    $errors = New-TemporaryFile
    $output = & az @args 2> $errors
    $failed = $LASTEXITCODE -ne 0
    $message = Get-Content -Raw $errors
    Remove-Item $errors
    if (-not $failed) { return $output }
    if ($message -match 'insufficient privileges|Authorization_RequestDenied|forbidden|403') {
        throw ("Entra ID refused 'az $args' to the signed-in identity: it may not read or change app registrations. " +
            'Create the registration once with a sign-in that may (azd provision with API_AUTH=entra), then set ' +
            "API_AUTH_CLIENT_ID to its client id (in a pipeline: the repository variable API_AUTH_CLIENT_ID).`n$message")
    }
    throw "'az $args' failed:`n$message"
}

if (($env:API_AUTH ?? 'key').ToLower() -eq 'entra') {
    $clientId = $env:API_AUTH_CLIENT_ID
    if ($clientId) {
        if ($clientId -notmatch '^[0-9a-fA-F]{8}(-[0-9a-fA-F]{4}){3}-[0-9a-fA-F]{12}$') {
            throw "API_AUTH_CLIENT_ID=$clientId is not a client id (a GUID)."
        }
    }
    else {
        $name = "teams-app-upgrader-api-$envName"
        $clientId = Invoke-Directory ad app list --display-name $name --query '[0].appId' --output tsv
        if (-not $clientId) {
            $clientId = Invoke-Directory ad app create --display-name $name --sign-in-audience AzureADMyOrg `
                --app-roles "@$rolesFile" --query appId --output tsv
            Write-Host "Created the app registration $name ($clientId) with the roles Upgrades.Run and Upgrades.Read."
        }
        Invoke-Directory ad app update --id $clientId --identifier-uris "api://$clientId" --set api.requestedAccessTokenVersion=2
        az ad sp show --id $clientId --query id --output tsv *> $null
        if ($LASTEXITCODE -ne 0) { Invoke-Directory ad sp create --id $clientId --output none }
        azd env set API_AUTH_CLIENT_ID $clientId
    }
    Write-Host "Operator sign-in: Entra ID, API app registration $clientId (assign Upgrades.Run / Upgrades.Read to people and pipelines)."
}

# `azd down` removes the template's outputs from the environment, so the vault is found by what it
# carries: this environment's tag or resource group, and this region (its name derives from the region).
$subscription = if ($env:AZURE_SUBSCRIPTION_ID) { @("--subscription=$($env:AZURE_SUBSCRIPTION_ID)") } else { @() }
$deleted = az keyvault list-deleted --resource-type vault @subscription --output json
if ($LASTEXITCODE -ne 0) { throw 'Could not list the soft-deleted Key Vaults.' }
$vault = $deleted | ConvertFrom-Json | Where-Object {
    $_.name -like 'kv-upg-*' -and
    ($_.properties.tags.'azd-env-name' -eq $envName -or $_.properties.vaultId -like "*/resourceGroups/rg-$envName/*") -and
    (-not $env:AZURE_LOCATION -or $_.properties.location -eq $env:AZURE_LOCATION)
} | Select-Object -First 1 -ExpandProperty name
$mode = 'default'
if ($vault) {
    $mode = 'recover'
    Write-Host "Key Vault $vault of this environment is soft-deleted (azd down): it will be recovered, secrets and all."
}
azd env set KEY_VAULT_CREATE_MODE $mode
