// A gRPC client routed by heartbeat, with no heartbeat code: stock
// @grpc/grpc-js with @grpc/grpc-js-xds resolves `xds:///SERVICE` through the
// xDS bootstrap that `heartbeat xds-bootstrap` prints, and balances round
// robin over the service's live, SERVING members only.
//
//   heartbeat xds-bootstrap --server 127.0.0.1:50051 > xds.json
//   GRPC_XDS_BOOTSTRAP=xds.json node xds-client.js web 10
//
// Calls `/demo.v1.Who/Name` (see ../python/who_server.py) COUNT times and
// prints one JSON line: how many calls each backend answered, and the errors
// by status code. Without COUNT it reads counts from standard input, one per
// line, and answers each with such a line, on one channel for its whole life.
// If heartbeat goes away, the channel keeps the endpoints it last got.

const grpc = require("@grpc/grpc-js");
require("@grpc/grpc-js-xds").register();
const readline = require("readline");

const METHOD = "/demo.v1.Who/Name";
const [service, count] = process.argv.slice(2);
if (!service || process.argv.length > 4 || (count !== undefined && !/^\d+$/.test(count))) {
  console.error("usage: node xds-client.js SERVICE [COUNT]");
  process.exit(2);
}
const client = new grpc.Client(`xds:///${service}`, grpc.credentials.createInsecure());
const bytes = (b) => b;

function call() {
  return new Promise((resolve) => {
    const deadline = new Date(Date.now() + 5000);
    client.makeUnaryRequest(METHOD, bytes, bytes, Buffer.alloc(0), { deadline }, (err, reply) =>
      resolve(err ? { error: grpc.status[err.code] } : { name: reply.toString() }),
    );
  });
}

async function calls(n) {
  const answered = {};
  const errors = {};
  for (let i = 0; i < n; i++) {
    const r = await call();
    if (r.error) errors[r.error] = (errors[r.error] || 0) + 1;
    else answered[r.name] = (answered[r.name] || 0) + 1;
  }
  return JSON.stringify({ answered, errors });
}

async function main() {
  if (count !== undefined) {
    console.log(await calls(Number(count)));
  } else {
    for await (const line of readline.createInterface({ input: process.stdin })) {
      if (line.trim()) console.log(await calls(Number(line)));
    }
  }
  client.close();
  process.exit(0);
}

main();
