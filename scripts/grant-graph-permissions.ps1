<#
.SYNOPSIS
Grants the Function App's managed identity the Microsoft Graph application permissions it needs.

.DESCRIPTION
Idempotent: what is granted already is skipped. Uses Microsoft Graph PowerShell
(Install-Module Microsoft.Graph.Applications) and signs in with the scopes needed to grant
application permissions. Same options and permissions as grant-graph-permissions.sh.

Permissions granted (application permissions): for each Graph call, the least privileged one Graph's
reference page for the call names, except for upgrades, whose least privileged (...Self...) only lets a
Teams app upgrade itself; docs/operations.md's permission table lists each call:
  always             AppCatalog.Read.All                                  read the app catalog
  chat               TeamsAppInstallation.ReadWriteForChat.All            list and upgrade installations in chats
                       -Rsc: TeamsAppInstallation.ReadWriteAndConsentForChat.All instead
                     Chat.ReadBasic.All                                   list a user's chats filtered by installed app
                     User.Read.All (not with -GroupDiscovery)             list users (the scan)
  team               TeamsAppInstallation.ReadWriteForTeam.All            list and upgrade installations in teams
                       -Rsc: TeamsAppInstallation.ReadWriteAndConsentForTeam.All instead
                     Team.ReadBasic.All                                   GET /teams; GET /users/{id}/joinedTeams
  personal           TeamsAppInstallation.ReadWriteForUser.All            list and upgrade users' personal installations
                       -Rsc: TeamsAppInstallation.ReadWriteAndConsentForUser.All instead
                     User.Read.All (not with -GroupDiscovery)             list users (the scan)
  -GroupDiscovery, -Rings  GroupMember.ReadBasic.All                      the group's transitive members
The installation registry's subscription (/appCatalogs/teamsApps/{id}/installations, filtered by scope)
needs one read permission per filtered scope; the installation permission of that scope above is one,
so it needs nothing extra.

.EXAMPLE
./scripts/grant-graph-permissions.ps1 -PrincipalId <object id> -WhatIf
./scripts/grant-graph-permissions.ps1 -PrincipalId <object id> -Scopes chat,team,personal -Rsc -GroupDiscovery
#>
[CmdletBinding(SupportsShouldProcess = $true)]
param(
    # The identity's service principal object id (azd output MANAGED_IDENTITY_PRINCIPAL_ID).
    [string] $PrincipalId = $env:MANAGED_IDENTITY_PRINCIPAL_ID,
    # The scopes the app upgrades, as in the app setting UPGRADE_SCOPES: any of chat, team, personal
    # (an array, or one comma-separated string). Default: chat.
    [string[]] $Scopes = @('chat'),
    # The app to upgrade has resource-specific permissions: the ReadWriteAndConsent variant instead of
    # the ReadWrite one, in each chosen scope.
    [switch] $Rsc,
    # DISCOVERY_GROUP_ID is used: GroupMember.ReadBasic.All, and not User.Read.All (no scan of every user).
    [switch] $GroupDiscovery,
    # Pilot rings (publish with groupId): also GroupMember.ReadBasic.All.
    [switch] $Rings,
    # Print what would be granted, change nothing (same as -WhatIf).
    [switch] $DryRun
)
$ErrorActionPreference = 'Stop'
if (-not $PrincipalId) { throw 'Give -PrincipalId (or set MANAGED_IDENTITY_PRINCIPAL_ID, which azd sets).' }
if ($PrincipalId -notmatch '^[0-9a-fA-F]{8}-([0-9a-fA-F]{4}-){3}[0-9a-fA-F]{12}$') {
    throw "-PrincipalId must be the identity's object id (a GUID), got: $PrincipalId"
}
if ($DryRun) { $WhatIfPreference = $true }

# The scopes, read as the app reads UPGRADE_SCOPES (trimmed, any case); duplicates are ignored.
$valid = 'chat', 'team', 'personal'
$items = @($Scopes | ForEach-Object { "$_" -split ',' } | ForEach-Object { $_.Trim() })
if ((-join $items) -eq '') {
    [Console]::Error.WriteLine('error: -Scopes is empty: give any of chat, team, personal, comma-separated')
    exit 2
}
$chosen = @()
foreach ($item in $items) {
    if ($item -eq '') {
        [Console]::Error.WriteLine("error: -Scopes: an empty scope in '$($Scopes -join ',')' (any of chat, team, personal, comma-separated)")
        exit 2
    }
    if ($valid -notcontains $item) {
        [Console]::Error.WriteLine("error: -Scopes: unknown scope '$item' in '$($Scopes -join ',')' (any of chat, team, personal, comma-separated)")
        exit 2
    }
    $chosen += $item.ToLowerInvariant()
}

# User.Read.All comes with chat and personal only, and only without -GroupDiscovery: both scan all users
# (GET /users) when DISCOVERY_GROUP_ID is not set; with it, the group's members come from
# GroupMember.ReadBasic.All. Clearing DISCOVERY_GROUP_ID later needs this script again without the switch (a run
# would fail missingPermissions naming User.Read.All). The team scope never needs it: teams are listed with
# GET /teams, and a group member's teams with joinedTeams (Team.ReadBasic.All). Nothing is ever revoked.
$permissions = @('AppCatalog.Read.All')
if ($chosen -contains 'chat') {
    $permissions += if ($Rsc) { 'TeamsAppInstallation.ReadWriteAndConsentForChat.All' } else { 'TeamsAppInstallation.ReadWriteForChat.All' }
    $permissions += 'Chat.ReadBasic.All'
    if (-not $GroupDiscovery) { $permissions += 'User.Read.All' }
}
if ($chosen -contains 'team') {
    $permissions += if ($Rsc) { 'TeamsAppInstallation.ReadWriteAndConsentForTeam.All' } else { 'TeamsAppInstallation.ReadWriteForTeam.All' }
    $permissions += 'Team.ReadBasic.All'
}
if ($chosen -contains 'personal') {
    $permissions += if ($Rsc) { 'TeamsAppInstallation.ReadWriteAndConsentForUser.All' } else { 'TeamsAppInstallation.ReadWriteForUser.All' }
    if (-not $GroupDiscovery) { $permissions += 'User.Read.All' }
}
if ($GroupDiscovery -or $Rings) { $permissions += 'GroupMember.ReadBasic.All' }
$permissions = @($permissions | Select-Object -Unique)  # once each, in order

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
