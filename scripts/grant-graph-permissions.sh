#!/usr/bin/env bash
# Grants the Function App's managed identity the Microsoft Graph application permissions it needs.
# Idempotent: what is granted already is skipped. Needs the Azure CLI, signed in as someone who may
# grant application permissions (Privileged Role Administrator, or Application Administrator
# with AppRoleAssignment.ReadWrite.All).
#
#   scripts/grant-graph-permissions.sh --principal-id <object id of the identity> [--rsc] [--group-discovery] [--dry-run]
#
# --principal-id     the identity's service principal object id (azd output MANAGED_IDENTITY_PRINCIPAL_ID;
#                    defaults to that environment variable)
# --rsc              the app to upgrade has resource-specific permissions: grant
#                    TeamsAppInstallation.ReadWriteAndConsentForChat.All instead of ...ReadWriteForChat.All
# --group-discovery  DISCOVERY_GROUP_ID is used: also grant GroupMember.Read.All
# --dry-run          print what would be granted, change nothing
set -euo pipefail

GRAPH_APP_ID="00000003-0000-0000-c000-000000000000"
principal="${MANAGED_IDENTITY_PRINCIPAL_ID:-}"
rsc=false
group=false
dry_run=false

while [ $# -gt 0 ]; do
  case "$1" in
    --principal-id) principal="${2:?--principal-id needs a value}"; shift 2 ;;
    --rsc) rsc=true; shift ;;
    --group-discovery) group=true; shift ;;
    --dry-run) dry_run=true; shift ;;
    -h|--help) sed -n '2,14p' "$0"; exit 0 ;;
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

permissions=(Chat.ReadBasic.All User.Read.All AppCatalog.Read.All)
if $rsc; then
  permissions+=(TeamsAppInstallation.ReadWriteAndConsentForChat.All)
else
  permissions+=(TeamsAppInstallation.ReadWriteForChat.All)
fi
if $group; then
  permissions+=(GroupMember.Read.All)
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
