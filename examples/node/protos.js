// Loads the project's protos (no generated code): heartbeat.v1 and the
// standard grpc.health.v1 (with List). proto-loader brings the
// google.protobuf well-known types itself.
const path = require("path");
const grpc = require("@grpc/grpc-js");
const loader = require("@grpc/proto-loader");

const PROTO = path.join(__dirname, "..", "..", "proto");
const options = { includeDirs: [PROTO], longs: String, enums: String, defaults: true, oneofs: true };

function load(file) {
  return grpc.loadPackageDefinition(loader.loadSync(path.join(PROTO, file), options));
}

module.exports = {
  grpc,
  heartbeat: load("heartbeat/v1/heartbeat.proto").heartbeat.v1,
  health: load("grpc/health/v1/health.proto").grpc.health.v1,
};
