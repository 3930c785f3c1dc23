#!/usr/bin/env node
// Parses and binds KQL with Microsoft's Kusto.Language (npm @kusto/language-service-next).
// Usage: node kql_check.js schema.json < queries.json
//   schema.json: {"Table": [["Column", "type"], ...], ...}
//   stdin:       [{"name": "...", "query": "..."}, ...]
//   stdout:      [{"name": "...", "errors": [{"message", "start", "length"}]}, ...]
'use strict';
const fs = require('fs');
require('@kusto/language-service-next/bridge.min.js'); // the Bridge.NET runtime (globals Bridge, System)
require('@kusto/language-service-next/Kusto.Language.Bridge.min.js'); // global Kusto
const K = Kusto.Language;
const S = Kusto.Language.Symbols;

function globalsFor(schema) {
  const tables = Object.entries(schema).map(([table, columns]) => {
    const symbols = columns.map(([name, type]) => {
      const scalar = S.ScalarTypes.GetSymbol(type);
      if (!scalar) throw new Error(`unknown type ${type} of ${table}.${name}`);
      return new S.ColumnSymbol(name, scalar, null, null, null, null);
    });
    return new S.TableSymbol.$ctor4(table, symbols);
  });
  return K.GlobalState.Default.WithDatabase(new S.DatabaseSymbol.ctor('workspace', tables));
}

function errors(query, globals) {
  const diagnostics = K.KustoCode.ParseAndAnalyze(query, globals).GetDiagnostics();
  const found = [];
  for (let i = 0; i < diagnostics.Count; i++) {
    const d = diagnostics.getItem(i);
    if (d.Severity === 'Error') found.push({ message: d.Message, start: d.Start, length: d.Length });
  }
  return found;
}

const globals = globalsFor(JSON.parse(fs.readFileSync(process.argv[2], 'utf8')));
const queries = JSON.parse(fs.readFileSync(0, 'utf8'));
const results = queries.map(({ name, query }) => ({ name, errors: errors(String(query), globals) }));
process.stdout.write(JSON.stringify(results) + '\n');
