// Saved queries, a workbook and alerts over the app's structured logs (AppTraces.Properties).

param location string
param tags object
param token string
param workspaceName string
param appInsightsId string
param alertEmail string

resource workspace 'Microsoft.OperationalInsights/workspaces@2023-09-01' existing = {
  name: workspaceName
}

var queries = [
  { name: 'upgrader-runs', displayName: 'Upgrader: runs', query: loadTextContent('monitoring/queries/runs.kql') }
  { name: 'upgrader-target-outcomes', displayName: 'Upgrader: outcomes over time, by scope', query: loadTextContent('monitoring/queries/target-outcomes.kql') }
  { name: 'upgrader-failures', displayName: 'Upgrader: failures by Graph code', query: loadTextContent('monitoring/queries/failures-by-graph-code.kql') }
  { name: 'upgrader-throttling', displayName: 'Upgrader: throttling', query: loadTextContent('monitoring/queries/throttling.kql') }
  { name: 'upgrader-queue-depth', displayName: 'Upgrader: queue depth', query: loadTextContent('monitoring/queries/queue-depth.kql') }
  { name: 'upgrader-targets-of-run', displayName: 'Upgrader: targets of one run', query: loadTextContent('monitoring/queries/targets-of-run.kql') }
  { name: 'upgrader-poisoned', displayName: 'Upgrader: poisoned messages', query: loadTextContent('monitoring/queries/poisoned.kql') }
  { name: 'upgrader-run-steps', displayName: 'Upgrader: runs through their plans', query: loadTextContent('monitoring/queries/run-steps.kql') }
]

resource savedSearches 'Microsoft.OperationalInsights/workspaces/savedSearches@2020-08-01' = [for q in queries: {
  parent: workspace
  name: q.name
  properties: {
    category: 'Teams App Upgrader'
    displayName: q.displayName
    query: q.query
    version: 2
  }
}]

resource workbook 'Microsoft.Insights/workbooks@2023-06-01' = {
  name: guid(resourceGroup().id, 'teams-app-upgrader-workbook')
  location: location
  tags: tags
  kind: 'shared'
  properties: {
    displayName: 'Teams App Upgrader'
    category: 'workbook'
    sourceId: workspace.id
    serializedData: replace(loadTextContent('monitoring/workbook.json'), '__WORKSPACE_ID__', workspace.id)
  }
}

resource actionGroup 'Microsoft.Insights/actionGroups@2023-01-01' = if (!empty(alertEmail)) {
  name: 'ag-upgrader-${token}'
  location: 'global'
  tags: tags
  properties: {
    groupShortName: 'upgrader'
    enabled: true
    emailReceivers: [
      { name: 'operator', emailAddress: alertEmail, useCommonAlertSchema: true }
    ]
  }
}

var actions = empty(alertEmail) ? {} : { actionGroups: [actionGroup.id] }

resource failedTargetsAlert 'Microsoft.Insights/scheduledQueryRules@2023-12-01' = {
  name: 'alert-upgrader-failed-targets-${token}'
  location: location
  tags: tags
  kind: 'LogAlert'
  properties: {
    displayName: 'Teams App Upgrader: installations failed to upgrade'
    description: 'Chats, teams or users ended in outcome "failed" (Graph refused the upgrade, or retries were exhausted). See the workbook.'
    severity: 2
    enabled: true
    scopes: [workspace.id]
    evaluationFrequency: 'PT15M'
    windowSize: 'PT15M'
    autoMitigate: true
    // the workspace has no AppTraces table until the app first logs: do not fail the deployment over it
    skipQueryValidation: true
    criteria: {
      allOf: [
        {
          query: 'AppTraces | where tostring(Properties.event) == "targetOutcome" and tostring(Properties.outcome) == "failed"'
          timeAggregation: 'Count'
          operator: 'GreaterThan'
          threshold: 0
          failingPeriods: { numberOfEvaluationPeriods: 1, minFailingPeriodsToAlert: 1 }
        }
      ]
    }
    actions: actions
  }
}

resource poisonAlert 'Microsoft.Insights/scheduledQueryRules@2023-12-01' = {
  name: 'alert-upgrader-poison-${token}'
  location: location
  tags: tags
  kind: 'LogAlert'
  properties: {
    displayName: 'Teams App Upgrader: messages reached a poison queue'
    description: 'A queue message failed every attempt. Its targets were recorded as failed (retriesExhausted); check the logs.'
    severity: 1
    enabled: true
    scopes: [workspace.id]
    evaluationFrequency: 'PT5M'
    windowSize: 'PT15M'
    autoMitigate: true
    // the workspace has no AppTraces table until the app first logs: do not fail the deployment over it
    skipQueryValidation: true
    criteria: {
      allOf: [
        {
          query: 'AppTraces | where tostring(Properties.event) == "poisoned" or (tostring(Properties.event) == "queueDepth" and tostring(Properties.queue) endswith "-poison" and toint(Properties.depth) > 0)'
          timeAggregation: 'Count'
          operator: 'GreaterThan'
          threshold: 0
          failingPeriods: { numberOfEvaluationPeriods: 1, minFailingPeriodsToAlert: 1 }
        }
      ]
    }
    actions: actions
  }
}

resource missingPermissionsAlert 'Microsoft.Insights/scheduledQueryRules@2023-12-01' = {
  name: 'alert-upgrader-missing-permissions-${token}'
  location: location
  tags: tags
  kind: 'LogAlert'
  properties: {
    displayName: 'Teams App Upgrader: the identity lacks a Graph permission'
    description: 'A run failed with missingPermissions: its error message names the permissions to grant (scripts/grant-graph-permissions.sh). Then retry the run.'
    severity: 1
    enabled: true
    scopes: [workspace.id]
    evaluationFrequency: 'PT5M'
    windowSize: 'PT5M'
    autoMitigate: true
    // the workspace has no AppTraces table until the app first logs: do not fail the deployment over it
    skipQueryValidation: true
    criteria: {
      allOf: [
        {
          query: 'AppTraces | where tostring(Properties.event) == "runFailed" and tostring(Properties.errorCode) == "missingPermissions"'
          timeAggregation: 'Count'
          operator: 'GreaterThan'
          threshold: 0
          failingPeriods: { numberOfEvaluationPeriods: 1, minFailingPeriodsToAlert: 1 }
        }
      ]
    }
    actions: actions
  }
}

resource pausedTooLongAlert 'Microsoft.Insights/scheduledQueryRules@2023-12-01' = {
  name: 'alert-upgrader-paused-too-long-${token}'
  location: location
  tags: tags
  kind: 'LogAlert'
  properties: {
    displayName: 'Teams App Upgrader: a run waits for an operator'
    description: 'A run has been paused (a canary or a rollout step) longer than PAUSED_ALERT_AFTER: look at its failures, then resume or cancel it (teams-upgrader status <runId>).'
    severity: 2
    enabled: true
    scopes: [workspace.id]
    evaluationFrequency: 'PT5M'
    windowSize: 'PT10M'
    autoMitigate: true
    // the workspace has no AppTraces table until the app first logs: do not fail the deployment over it
    skipQueryValidation: true
    criteria: {
      allOf: [
        {
          query: 'AppTraces | where tostring(Properties.event) == "runPausedTooLong"'
          timeAggregation: 'Count'
          operator: 'GreaterThan'
          threshold: 0
          failingPeriods: { numberOfEvaluationPeriods: 1, minFailingPeriodsToAlert: 1 }
        }
      ]
    }
    actions: actions
  }
}

resource stalledRunAlert 'Microsoft.Insights/scheduledQueryRules@2023-12-01' = {
  name: 'alert-upgrader-stalled-run-${token}'
  location: location
  tags: tags
  kind: 'LogAlert'
  properties: {
    displayName: 'Teams App Upgrader: a run recorded nothing for 30 minutes'
    description: 'A run discovering or upgrading has recorded no outcome for 30 minutes: check the queues, the poison queues and the Function App (see docs/troubleshooting.md).'
    severity: 1
    enabled: true
    scopes: [workspace.id]
    evaluationFrequency: 'PT5M'
    windowSize: 'PT10M'
    autoMitigate: true
    // the workspace has no AppTraces table until the app first logs: do not fail the deployment over it
    skipQueryValidation: true
    criteria: {
      allOf: [
        {
          query: 'AppTraces | where tostring(Properties.event) == "runStalled"'
          timeAggregation: 'Count'
          operator: 'GreaterThan'
          threshold: 0
          failingPeriods: { numberOfEvaluationPeriods: 1, minFailingPeriodsToAlert: 1 }
        }
      ]
    }
    actions: actions
  }
}

output workbookId string = workbook.id
output appInsightsId string = appInsightsId
