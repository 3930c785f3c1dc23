#!/usr/bin/env sh
# azd postdeploy hook: registers the function key that Graph notifications carry (when enabled)
# and says what is left to do. Never prints a key.
set -eu
app="${AZURE_FUNCTION_APP_NAME:?run through azd}"
group="${AZURE_RESOURCE_GROUP:?run through azd}"

if [ -n "${NOTIFICATION_FUNCTION_KEY:-}" ]; then
  az functionapp function keys set --resource-group "$group" --name "$app" \
    --function-name graph_notifications --key-name graph --key-value "$NOTIFICATION_FUNCTION_KEY" --output none
  echo "Registered the function key of /api/notifications (key name: graph)."
fi

cat <<TEXT

Deployed $app (${AZURE_FUNCTION_APP_URL:-}).
Next: grant the managed identity its Microsoft Graph permissions, once:
  scripts/grant-graph-permissions.sh --principal-id ${MANAGED_IDENTITY_PRINCIPAL_ID:-<principal id>} --dry-run
then without --dry-run. Get a function key for the API with:
  az functionapp keys list -g $group -n $app --query functionKeys.default -o tsv
TEXT
