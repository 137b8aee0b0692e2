// A heartbeat member in Node.js: Join, ping every agreed interval, keep a
// deadline on the server (no answer within the agreed timeout: reconnect with
// jittered backoff), Leave on SIGTERM/SIGINT.
//
//   node member.js --server 127.0.0.1:50051 --service orders --instance orders-1 \
//     --endpoint 10.0.0.7:8080   # xDS clients of xds:///orders are routed there
//
// Flags mean what they mean for `heartbeat beat` (see args.js); `--help`.
// Prints one line per event: joined session=N ..., interval=S (the server
// changed it in a Pong: adopted), server lost: ..., offline after N failed
// attempts, left.
const { performance } = require("perf_hooks");
const { grpc, heartbeat } = require("./protos");
const args = require("./args")("member.js", {
  server: { check: "server", default: "127.0.0.1:50051", help: "host:port of the server" },
  service: { check: "service", default: null, help: "service name of this member" },
  instance: { check: "instance", default: null, help: "instance name (unique within the service)" },
  interval: { check: "duration", default: undefined, help: "requested ping interval, e.g. 500ms (the server may clamp it)" },
  timeout: { check: "duration", default: undefined, help: "requested liveness timeout, e.g. 3s (the server may clamp it)" },
  endpoint: { check: "endpoint", default: undefined, help: "host:port where this member serves; xDS clients are routed there" },
  "max-retries": { check: "count", default: 3, help: "failed attempts in a row before reporting offline" },
});
// google.protobuf.Duration from seconds.
const pbDuration = (s) => ({ seconds: String(Math.floor(s)), nanos: Math.round((s % 1) * 1e9) });

const say = (line) => console.log(line);
const seconds = (d) => Number(d.seconds) + d.nanos / 1e9;
// The interval to ping at, whatever the server says: within 100 ms..60 s and
// at most half the timeout (SPEC §5).
const clientInterval = (told, timeout) =>
  Math.max(0.1, Math.min(Math.max(0.1, Math.min(told, 60)), timeout / 2));
let stopping = null; // set to a function by the live session on SIGTERM

function session() {
  return new Promise((resolve) => {
    // A fresh client per session: a lost server may be a half-open connection.
    const client = new heartbeat.Heartbeat(args.server, grpc.credentials.createInsecure());
    const call = client.Beat();
    let settled = false;
    let ticker = null;
    let watchdog = null;
    let lastHeard = performance.now();
    let timeout = args.timeout || 3; // the server's default until a Welcome says otherwise
    let seq = 0;
    let ping = null;
    const finish = (outcome, line) => {
      if (settled) return;
      settled = true;
      clearInterval(ticker);
      clearInterval(watchdog);
      stopping = null;
      if (line) say(line);
      call.cancel();
      client.close();
      resolve(outcome);
    };
    watchdog = setInterval(() => {
      if ((performance.now() - lastHeard) / 1000 > timeout) finish("lost", `server lost: no answer within ${timeout}s`);
    }, 50);
    call.on("data", (msg) => {
      lastHeard = performance.now();
      if (msg.kind === "welcome") {
        const w = msg.welcome;
        timeout = seconds(w.timeout);
        const interval = clientInterval(seconds(w.interval), timeout);
        say(`joined session=${w.session} interval=${interval} timeout=${timeout}`);
        ping = () => call.write({ ping: { seq: String(++seq), status: "MEMBER_STATUS_SERVING" } });
        ping();
        ticker = setInterval(ping, interval * 1000);
        stopping = () => {
          clearInterval(ticker);
          call.write({ leave: { reason: "shutting down" } });
          call.end();
          setTimeout(() => finish("left", "leave not confirmed; the server's deadline decides"), 1000);
        };
      } else if (msg.kind === "pong" && msg.pong.interval) {
        // The server changed the agreed interval (it is over its ping budget,
        // or back under it): adopt it.
        const interval = clientInterval(seconds(msg.pong.interval), timeout);
        clearInterval(ticker);
        ticker = setInterval(ping, interval * 1000);
        say(`interval=${interval}`);
      } else if (msg.kind === "drain") {
        finish("drained", "drained");
      }
    });
    call.on("status", (status) => {
      // The server ends a stream with OK only after our Leave.
      if (status.code === grpc.status.OK) finish("left", "left");
      else finish("lost", `server lost: ${status.details}`);
    });
    call.on("error", () => {}); // reported through "status"
    const join = { service: args.service, instance: args.instance, endpoint: args.endpoint || "" };
    if (args.interval) join.interval = pbDuration(args.interval);
    if (args.timeout) join.timeout = pbDuration(args.timeout);
    call.write({ join });
  });
}

async function main() {
  let leaving = false;
  const onSignal = () => {
    leaving = true;
    if (stopping) stopping();
    else process.exit(0);
  };
  process.on("SIGTERM", onSignal);
  process.on("SIGINT", onSignal);
  let failures = 0;
  while (!leaving) {
    const outcome = await session();
    if (outcome === "left" || leaving) break;
    failures = outcome === "lost" ? failures + 1 : 0;
    if (failures === args["max-retries"]) say(`offline after ${failures} failed attempts`);
    const delay = Math.min(100 * 1.6 ** Math.max(failures - 1, 0), 10000) * (0.8 + 0.4 * Math.random());
    await new Promise((r) => setTimeout(r, delay));
  }
  process.exit(0);
}

main();
