# azd postdeploy hook (Windows): registers the function key Graph notifications carry, when enabled.
$ErrorActionPreference = 'Stop'
$app = $env:AZURE_FUNCTION_APP_NAME
$group = $env:AZURE_RESOURCE_GROUP
if (-not $app -or -not $group) { throw 'Run through azd.' }
if ($env:NOTIFICATION_FUNCTION_KEY) {
    az functionapp function keys set --resource-group $group --name $app `
        --function-name graph_notifications --key-name graph --key-value $env:NOTIFICATION_FUNCTION_KEY --output none
    Write-Host 'Registered the function key of /api/notifications (key name: graph).'
}
Write-Host ""
Write-Host "Deployed $app ($env:AZURE_FUNCTION_APP_URL)."
Write-Host 'Next: grant the managed identity its Microsoft Graph permissions, once:'
$principal = if ($env:MANAGED_IDENTITY_PRINCIPAL_ID) { $env:MANAGED_IDENTITY_PRINCIPAL_ID } else { '<principal id>' }
Write-Host "  ./scripts/grant-graph-permissions.ps1 -PrincipalId $principal -WhatIf"
Write-Host 'then without -WhatIf. Get a function key for the API with:'
Write-Host "  az functionapp keys list -g $group -n $app --query functionKeys.default -o tsv"
