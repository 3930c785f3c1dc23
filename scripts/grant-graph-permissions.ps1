<#
.SYNOPSIS
Grants the Function App's managed identity the Microsoft Graph application permissions it needs.

.DESCRIPTION
Idempotent: what is granted already is skipped. Uses Microsoft Graph PowerShell
(Install-Module Microsoft.Graph.Applications) and signs in with the scopes needed to grant
application permissions.

.EXAMPLE
./scripts/grant-graph-permissions.ps1 -PrincipalId <object id> -WhatIf
./scripts/grant-graph-permissions.ps1 -PrincipalId <object id> -Rsc -GroupDiscovery
#>
[CmdletBinding(SupportsShouldProcess = $true)]
param(
    # The identity's service principal object id (azd output MANAGED_IDENTITY_PRINCIPAL_ID).
    [string] $PrincipalId = $env:MANAGED_IDENTITY_PRINCIPAL_ID,
    # The app to upgrade has resource-specific permissions: ReadWriteAndConsentForChat.All instead of ReadWriteForChat.All.
    [switch] $Rsc,
    # DISCOVERY_GROUP_ID is used: also GroupMember.Read.All.
    [switch] $GroupDiscovery,
    # Print what would be granted, change nothing (same as -WhatIf).
    [switch] $DryRun
)
$ErrorActionPreference = 'Stop'
if (-not $PrincipalId) { throw 'Give -PrincipalId (or set MANAGED_IDENTITY_PRINCIPAL_ID, which azd sets).' }
if ($PrincipalId -notmatch '^[0-9a-fA-F]{8}-([0-9a-fA-F]{4}-){3}[0-9a-fA-F]{12}$') {
    throw "-PrincipalId must be the identity's object id (a GUID), got: $PrincipalId"
}
if ($DryRun) { $WhatIfPreference = $true }

$permissions = @('Chat.ReadBasic.All', 'User.Read.All', 'AppCatalog.Read.All')
$permissions += if ($Rsc) { 'TeamsAppInstallation.ReadWriteAndConsentForChat.All' } else { 'TeamsAppInstallation.ReadWriteForChat.All' }
if ($GroupDiscovery) { $permissions += 'GroupMember.Read.All' }

Connect-MgGraph -Scopes 'Application.Read.All', 'AppRoleAssignment.ReadWrite.All' -NoWelcome
$graph = Get-MgServicePrincipal -Filter "appId eq '00000003-0000-0000-c000-000000000000'"
$granted = (Get-MgServicePrincipalAppRoleAssignment -ServicePrincipalId $PrincipalId -All |
    Where-Object { $_.ResourceId -eq $graph.Id }).AppRoleId

$changed = 0
foreach ($permission in $permissions) {
    $role = $graph.AppRoles | Where-Object { $_.Value -eq $permission -and $_.AllowedMemberTypes -contains 'Application' }
    if (-not $role) { throw "Microsoft Graph has no application permission named $permission" }
    if ($granted -contains $role.Id) {
        Write-Host "already granted: $permission"
        continue
    }
    if ($PSCmdlet.ShouldProcess($PrincipalId, "grant $permission ($($role.Id))")) {
        New-MgServicePrincipalAppRoleAssignedTo -ServicePrincipalId $graph.Id `
            -PrincipalId $PrincipalId -ResourceId $graph.Id -AppRoleId $role.Id | Out-Null
        Write-Host "granted: $permission"
        $changed++
    }
}
if ($changed -gt 0) {
    Write-Host 'Managed identity tokens are cached for up to 24 hours: new permissions can take that long to apply.'
}
