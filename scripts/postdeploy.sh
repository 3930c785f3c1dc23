#!/usr/bin/env sh
# azd postdeploy hook: registers the function key that Graph notifications carry (when enabled)
# and says what is left to do. Never prints a key.
set -eu
app="${AZURE_FUNCTION_APP_NAME:?run through azd}"
group="${AZURE_RESOURCE_GROUP:?run through azd}"

# Right after a deployment the host may not have indexed graph_notifications yet, and its key API
# answers 404 until it has: that is retried with back-off (about four minutes in all). Any other
# error stops at once. A host-level key would need no indexing, but would open every function-level
# route (the operator API with API_AUTH=key) to whoever holds the notification URL.
register_notification_key() {
  errors="$(mktemp)"
  for wait in 5 10 20 40 60 60 60 0; do
    if az functionapp function keys set --resource-group "$group" --name "$app" --function-name graph_notifications \
      --key-name graph --key-value "$NOTIFICATION_FUNCTION_KEY" --output none 2>"$errors"; then
      rm -f "$errors"
      return 0
    fi
    if [ "$wait" -eq 0 ] || ! grep -Eqi "not ?found|404" "$errors"; then
      break
    fi
    echo "graph_notifications is not indexed yet (404): trying again in ${wait} s."
    sleep "$wait"
  done
  cat "$errors" >&2
  rm -f "$errors"
  echo "Could not register the function key of /api/notifications; once the app answers, run: azd hooks run postdeploy" >&2
  return 1
}

if [ -n "${NOTIFICATION_FUNCTION_KEY:-}" ]; then
  register_notification_key
  echo "Registered the function key of /api/notifications (key name: graph)."
fi

cat <<TEXT

Deployed $app (${AZURE_FUNCTION_APP_URL:-}).
Next: grant the managed identity its Microsoft Graph permissions, once:
  scripts/grant-graph-permissions.sh --principal-id ${MANAGED_IDENTITY_PRINCIPAL_ID:-<principal id>} --dry-run
then without --dry-run. Get a function key for the API with:
  az functionapp keys list -g $group -n $app --query functionKeys.default -o tsv
TEXT
