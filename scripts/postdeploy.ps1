# azd postdeploy hook (Windows): the same as postdeploy.sh. Registers the function key Graph
# notifications carry, when enabled, retrying while the host has not indexed graph_notifications (404).
$ErrorActionPreference = 'Stop'
$app = $env:AZURE_FUNCTION_APP_NAME
$group = $env:AZURE_RESOURCE_GROUP
if (-not $app -or -not $group) { throw 'Run through azd.' }

function Register-NotificationKey {
    foreach ($wait in 5, 10, 20, 40, 60, 60, 60, 0) {
        $errors = New-TemporaryFile
        az functionapp function keys set --resource-group $group --name $app --function-name graph_notifications `
            --key-name graph --key-value $env:NOTIFICATION_FUNCTION_KEY --output none 2> $errors
        $failed = $LASTEXITCODE -ne 0
        $message = Get-Content -Raw $errors
        Remove-Item $errors
        if (-not $failed) { return }
        if ($wait -eq 0 -or $message -notmatch 'not ?found|404') { break }
        Write-Host "graph_notifications is not indexed yet (404): trying again in $wait s."
        Start-Sleep -Seconds $wait
    }
    throw "Could not register the function key of /api/notifications; once the app answers, run: azd hooks run postdeploy`n$message"
}

if ($env:NOTIFICATION_FUNCTION_KEY) {
    Register-NotificationKey
    Write-Host 'Registered the function key of /api/notifications (key name: graph).'
}
Write-Host ""
Write-Host "Deployed $app ($env:AZURE_FUNCTION_APP_URL)."
Write-Host 'Next: grant the managed identity its Microsoft Graph permissions, once:'
$principal = if ($env:MANAGED_IDENTITY_PRINCIPAL_ID) { $env:MANAGED_IDENTITY_PRINCIPAL_ID } else { '<principal id>' }
Write-Host "  ./scripts/grant-graph-permissions.ps1 -PrincipalId $principal -WhatIf"
Write-Host 'then without -WhatIf. Get a function key for the API with:'
Write-Host "  az functionapp keys list -g $group -n $app --query functionKeys.default -o tsv"
