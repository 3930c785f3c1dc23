#!/usr/bin/env sh
# azd preprovision hook, before Bicep runs:
#  - API_AUTH=entra: creates the operator API's app registration (app roles Upgrades.Run and
#    Upgrades.Read, identifier URI api://<appId>, a service principal to assign the roles on) once,
#    and records its id in the azd environment as API_AUTH_CLIENT_ID; a given API_AUTH_CLIENT_ID is
#    used as is, without reading the directory (a pipeline's identity usually may not);
#  - a Key Vault this environment created earlier and `azd down` left soft-deleted is recovered
#    (KEY_VAULT_CREATE_MODE=recover) instead of colliding with a new one of the same name.
set -eu
env_name="${AZURE_ENV_NAME:?run through azd}"
roles_file="$(dirname "$0")/api-app-roles.json"

# Runs an `az ad` command; when Entra ID refuses it, stops the provision saying so and what to do.
directory() {
  errors="$(mktemp)"
  if "$@" 2>"$errors"; then
    rm -f "$errors"
    return 0
  fi
  if grep -Eqi 'insufficient privileges|Authorization_RequestDenied|forbidden|403' "$errors"; then
    echo "Entra ID refused '$*' to the signed-in identity: it may not read or change app registrations." >&2
    echo "Create the registration once with a sign-in that may (azd provision with API_AUTH=entra), then set" >&2
    echo "API_AUTH_CLIENT_ID to its client id (in a pipeline: the repository variable API_AUTH_CLIENT_ID)." >&2
  else
    echo "'$*' failed:" >&2
  fi
  cat "$errors" >&2
  rm -f "$errors"
  exit 1
}

if [ "$(printf '%s' "${API_AUTH:-key}" | tr 'A-Z' 'a-z')" = "entra" ]; then
  client_id="${API_AUTH_CLIENT_ID:-}"
  if [ -n "$client_id" ]; then
    if ! printf '%s' "$client_id" | grep -Eq '^[0-9a-fA-F]{8}(-[0-9a-fA-F]{4}){3}-[0-9a-fA-F]{12}$'; then
      echo "API_AUTH_CLIENT_ID=$client_id is not a client id (a GUID)." >&2
      exit 1
    fi
  else
    name="teams-app-upgrader-api-$env_name"
    client_id="$(directory az ad app list --display-name "$name" --query "[0].appId" --output tsv)" || exit 1
    if [ -z "$client_id" ]; then
      client_id="$(directory az ad app create --display-name "$name" --sign-in-audience AzureADMyOrg \
        --app-roles "@$roles_file" --query appId --output tsv)" || exit 1
      echo "Created the app registration $name ($client_id) with the roles Upgrades.Run and Upgrades.Read."
    fi
    directory az ad app update --id "$client_id" --identifier-uris "api://$client_id" --set api.requestedAccessTokenVersion=2
    az ad sp show --id "$client_id" --query id --output tsv >/dev/null 2>&1 || directory az ad sp create --id "$client_id" --output none
    azd env set API_AUTH_CLIENT_ID "$client_id"
  fi
  echo "Operator sign-in: Entra ID, API app registration $client_id (assign Upgrades.Run / Upgrades.Read to people and pipelines)."
fi

# `azd down` removes the template's outputs from the environment, so the vault is found by what it
# carries: this environment's tag or resource group, and this region (its name derives from the region).
match="(properties.tags.\"azd-env-name\"=='$env_name' || contains(properties.vaultId || '', '/resourceGroups/rg-$env_name/'))"
match="$match && starts_with(name, 'kv-upg-')"
if [ -n "${AZURE_LOCATION:-}" ]; then
  match="$match && properties.location=='$AZURE_LOCATION'"
fi
subscription="${AZURE_SUBSCRIPTION_ID:+--subscription=$AZURE_SUBSCRIPTION_ID}"
# shellcheck disable=SC2086 # $subscription is one option or nothing
vault="$(az keyvault list-deleted --resource-type vault $subscription --query "[?$match].name | [0]" --output tsv)"
mode=default
if [ -n "$vault" ]; then
  mode=recover
  echo "Key Vault $vault of this environment is soft-deleted (azd down): it will be recovered, secrets and all."
fi
azd env set KEY_VAULT_CREATE_MODE "$mode"
