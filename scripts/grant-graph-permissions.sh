#!/usr/bin/env bash
# Grants the Function App's managed identity the Microsoft Graph application permissions it needs.
# Idempotent: what is granted already is skipped. Needs the Azure CLI, signed in as someone who may
# grant application permissions (Privileged Role Administrator, or Application Administrator
# with AppRoleAssignment.ReadWrite.All).
#
#   scripts/grant-graph-permissions.sh --principal-id <object id of the identity>
#       [--scopes chat,team,personal] [--rsc] [--group-discovery] [--rings] [--dry-run]
#
# --principal-id     the identity's service principal object id (azd output MANAGED_IDENTITY_PRINCIPAL_ID;
#                    defaults to that environment variable)
# --scopes           the scopes the app upgrades, as in the app setting UPGRADE_SCOPES: comma-separated,
#                    any of chat, team, personal (default: chat)
# --rsc              the app to upgrade has resource-specific permissions: grant the ReadWriteAndConsent
#                    variant instead of the ReadWrite one, in each chosen scope
# --group-discovery  DISCOVERY_GROUP_ID is used: grant GroupMember.ReadBasic.All, and not User.Read.All
#                    (discovery lists the group's members, never every user)
# --rings            pilot rings (publish with groupId): also grant GroupMember.ReadBasic.All
# --dry-run          print what would be granted, change nothing
#
# Permissions granted (application permissions): for each Graph call, the least privileged one Graph's
# reference page for the call names, except for upgrades, whose least privileged (...Self...) only lets a
# Teams app upgrade itself; docs/operations.md's permission table lists each call:
#   always             AppCatalog.Read.All                                  read the app catalog
#   chat               TeamsAppInstallation.ReadWriteForChat.All            list and upgrade installations in chats
#                        --rsc: TeamsAppInstallation.ReadWriteAndConsentForChat.All instead
#                      Chat.ReadBasic.All                                   list a user's chats filtered by installed app
#                      User.Read.All (not with --group-discovery)           list users (the scan)
#   team               TeamsAppInstallation.ReadWriteForTeam.All            list and upgrade installations in teams
#                        --rsc: TeamsAppInstallation.ReadWriteAndConsentForTeam.All instead
#                      Team.ReadBasic.All                                   GET /teams; GET /users/{id}/joinedTeams
#   personal           TeamsAppInstallation.ReadWriteForUser.All            list and upgrade users' personal installations
#                        --rsc: TeamsAppInstallation.ReadWriteAndConsentForUser.All instead
#                      User.Read.All (not with --group-discovery)           list users (the scan)
#   --group-discovery, --rings  GroupMember.ReadBasic.All                   the group's transitive members
# The installation registry's subscription (/appCatalogs/teamsApps/{id}/installations, filtered by scope)
# needs one read permission per filtered scope; the installation permission of that scope above is one,
# so it needs nothing extra.
set -euo pipefail

GRAPH_APP_ID="00000003-0000-0000-c000-000000000000"
principal="${MANAGED_IDENTITY_PRINCIPAL_ID:-}"
rsc=false
group=false
rings=false
dry_run=false
scopes="chat"

while [ $# -gt 0 ]; do
  case "$1" in
    --principal-id) principal="${2:?--principal-id needs a value}"; shift 2 ;;
    --scopes)
      if [ $# -lt 2 ]; then echo "error: --scopes needs a value: any of chat, team, personal, comma-separated" >&2; exit 2; fi
      scopes="$2"; shift 2 ;;
    --rsc) rsc=true; shift ;;
    --group-discovery) group=true; shift ;;
    --rings) rings=true; shift ;;
    --dry-run) dry_run=true; shift ;;
    -h|--help) sed -n '2,/^[^#]/{/^#/p}' "$0"; exit 0 ;;
    *) echo "unknown option: $1 (see --help)" >&2; exit 2 ;;
  esac
done
if [ -z "$principal" ]; then
  echo "error: give --principal-id (or set MANAGED_IDENTITY_PRINCIPAL_ID, which azd sets)" >&2
  exit 2
fi
if ! [[ "$principal" =~ ^[0-9a-fA-F]{8}-([0-9a-fA-F]{4}-){3}[0-9a-fA-F]{12}$ ]]; then
  echo "error: --principal-id must be the identity's object id (a GUID), got: $principal" >&2
  exit 2
fi

# The scopes, read as the app reads UPGRADE_SCOPES (trimmed, any case); duplicates are ignored.
chat=false
team=false
personal=false
if [ -z "${scopes//[[:space:]]/}" ]; then
  echo "error: --scopes is empty: give any of chat, team, personal, comma-separated" >&2
  exit 2
fi
# the added comma keeps a trailing empty item (refused below); -d '' reads past newlines (read then returns 1)
IFS=',' read -r -d '' -a items < <(printf '%s,' "$scopes") || true
for item in "${items[@]}"; do
  trimmed="${item#"${item%%[![:space:]]*}"}"
  trimmed="${trimmed%"${trimmed##*[![:space:]]}"}"
  case "$(printf '%s' "$trimmed" | tr '[:upper:]' '[:lower:]')" in
    chat) chat=true ;;
    team) team=true ;;
    personal) personal=true ;;
    '') echo "error: --scopes: an empty scope in '$scopes' (any of chat, team, personal, comma-separated)" >&2; exit 2 ;;
    *) echo "error: --scopes: unknown scope '$trimmed' in '$scopes' (any of chat, team, personal, comma-separated)" >&2; exit 2 ;;
  esac
done

permissions=(AppCatalog.Read.All)
add() {  # once each, in order
  local p
  for p in "${permissions[@]}"; do [ "$p" = "$1" ] && return 0; done
  permissions+=("$1")
}
# User.Read.All comes with chat and personal only, and only without --group-discovery: both scan all users
# (GET /users) when DISCOVERY_GROUP_ID is not set; with it, the group's members come from
# GroupMember.ReadBasic.All. Clearing DISCOVERY_GROUP_ID later needs this script again without the flag (a run
# would fail missingPermissions naming User.Read.All). The team scope never needs it: teams are listed with
# GET /teams, and a group member's teams with joinedTeams (Team.ReadBasic.All). Nothing is ever revoked.
if $chat; then
  if $rsc; then add TeamsAppInstallation.ReadWriteAndConsentForChat.All; else add TeamsAppInstallation.ReadWriteForChat.All; fi
  add Chat.ReadBasic.All
  $group || add User.Read.All
fi
if $team; then
  if $rsc; then add TeamsAppInstallation.ReadWriteAndConsentForTeam.All; else add TeamsAppInstallation.ReadWriteForTeam.All; fi
  add Team.ReadBasic.All
fi
if $personal; then
  if $rsc; then add TeamsAppInstallation.ReadWriteAndConsentForUser.All; else add TeamsAppInstallation.ReadWriteForUser.All; fi
  $group || add User.Read.All
fi
if $group || $rings; then
  add GroupMember.ReadBasic.All
fi

graph_sp=$(az ad sp show --id "$GRAPH_APP_ID" --query id -o tsv)
# every application permission of Microsoft Graph, once: "<value><TAB><id>" per line
roles=$(az ad sp show --id "$GRAPH_APP_ID" \
  --query "appRoles[?contains(allowedMemberTypes, 'Application')].[value, id]" -o tsv)
granted=$(az rest --method GET \
  --url "https://graph.microsoft.com/v1.0/servicePrincipals/$principal/appRoleAssignments?\$top=999" \
  --query "value[?resourceId=='$graph_sp'].appRoleId" -o tsv)

changed=0
for permission in "${permissions[@]}"; do
  role=$(printf '%s\n' "$roles" | awk -F '\t' -v p="$permission" '$1 == p { print $2; exit }')
  if [ -z "$role" ]; then
    echo "error: Microsoft Graph has no application permission named $permission" >&2
    exit 1
  fi
  if printf '%s\n' "$granted" | grep -qxF "$role"; then
    echo "already granted: $permission"
    continue
  fi
  if $dry_run; then
    echo "would grant: $permission ($role)"
    continue
  fi
  az rest --method POST \
    --url "https://graph.microsoft.com/v1.0/servicePrincipals/$graph_sp/appRoleAssignedTo" \
    --headers "Content-Type=application/json" \
    --body "{\"principalId\": \"$principal\", \"resourceId\": \"$graph_sp\", \"appRoleId\": \"$role\"}" \
    --output none
  echo "granted: $permission"
  changed=$((changed + 1))
done

if [ "$changed" -gt 0 ]; then
  echo "Managed identity tokens are cached for up to 24 hours: new permissions can take that long to apply."
  echo "Restarting the Function App does not shorten it."
fi
