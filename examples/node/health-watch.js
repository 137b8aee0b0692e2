// Watches one health name on a heartbeat server (or agent) with the standard
// grpc.health.v1 Watch, printing one JSON line per status; reconnects with
// backoff when the stream ends.
//
//   node health-watch.js --server 127.0.0.1:50051 --service orders
const { grpc, health } = require("./protos");
const args = require("./args")("health-watch.js", {
  server: { check: "server", default: "127.0.0.1:50051", help: "host:port of the server or agent" },
  service: { check: "healthName", default: "", help: 'health name to watch ("" = the server itself)' },
});

process.on("SIGTERM", () => process.exit(0));
process.on("SIGINT", () => process.exit(0));

let failures = 0;
function watch() {
  const client = new health.Health(args.server, grpc.credentials.createInsecure());
  const call = client.Watch({ service: args.service });
  call.on("data", (msg) => {
    failures = 0;
    console.log(JSON.stringify({ service: args.service, status: msg.status }));
  });
  call.on("error", () => {});
  call.on("status", (status) => {
    client.close();
    failures += 1;
    const delay = Math.min(100 * 1.6 ** (failures - 1), 10000) * (0.8 + 0.4 * Math.random());
    console.error(`watch ended (${status.details}); again in ${Math.round(delay)} ms`);
    setTimeout(watch, delay);
  });
}

watch();
