// Command-line flags for the examples, with the meanings `heartbeat beat`
// gives them: `--interval` and `--timeout` are requested durations (250ms,
// 1s, 2m), `--max-retries` the failed attempts before reporting offline.
// Every value is checked before any connection: a bad one prints the usage
// line and exits 2; `--help` prints the usage and exits 0.

const UNITS = { ms: 0.001, s: 1, m: 60, h: 3600 };

// Validators: each returns the parsed value or throws a message.
const checks = {
  server(v) {
    const addr = v.startsWith("http://") ? v.slice("http://".length) : v;
    const i = addr.lastIndexOf(":");
    const port = Number(addr.slice(i + 1));
    if (i < 1 || !/^\d+$/.test(addr.slice(i + 1)) || port < 1 || port > 65535) {
      throw `${JSON.stringify(v)}: use host:port (port 1-65535)`;
    }
    return addr;
  },
  service(v) {
    if (!/^[A-Za-z0-9._-]{1,128}$/.test(v)) {
      throw `${JSON.stringify(v)} is not a valid service name: 1-128 characters of A-Za-z0-9._-`;
    }
    if (v === "grpc.health.v1.Health" || v.startsWith("heartbeat.")) {
      throw `${JSON.stringify(v)}: that name is reserved`;
    }
    return v;
  },
  instance(v) {
    if (!/^[A-Za-z0-9._:-]{1,128}$/.test(v)) {
      throw `${JSON.stringify(v)} is not a valid instance name: 1-128 characters of A-Za-z0-9._:-`;
    }
    return v;
  },
  duration(v) {
    const parts = [...v.matchAll(/(\d+(?:\.\d+)?)(ms|s|m|h)/g)];
    if (parts.length === 0 || parts.map((p) => p[0]).join("") !== v) {
      throw `${JSON.stringify(v)} is not a duration (use e.g. 250ms, 1s, 2m)`;
    }
    const seconds = parts.reduce((sum, p) => sum + Number(p[1]) * UNITS[p[2]], 0);
    if (seconds <= 0) throw `${JSON.stringify(v)}: must be more than zero`;
    return seconds;
  },
  endpoint(v) {
    const i = v.lastIndexOf(":");
    const port = Number(v.slice(i + 1));
    if (i < 1 || !/^\d+$/.test(v.slice(i + 1)) || port < 1 || port > 65535) {
      throw `${JSON.stringify(v)}: use host:port (port 1-65535)`;
    }
    return v;
  },
  count(v) {
    if (!/^\d+$/.test(v) || Number(v) < 1) throw `${JSON.stringify(v)}: must be a whole number, at least 1`;
    return Number(v);
  },
  healthName(v) {
    return v;
  },
};

// `spec`: flag name -> { check, default (undefined = optional, null = required), help }.
module.exports = function args(script, spec) {
  const usage =
    `usage: node ${script} ` +
    Object.entries(spec)
      .map(([k, s]) => (s.default === null ? `--${k} ${k.toUpperCase()}` : `[--${k} ${k.toUpperCase()}]`))
      .join(" ");
  const fail = (msg) => {
    console.error(`${usage}\n${script}: error: ${msg}`);
    process.exit(2);
  };
  const argv = process.argv.slice(2);
  if (argv.includes("--help") || argv.includes("-h")) {
    console.log(usage);
    for (const [k, s] of Object.entries(spec)) console.log(`  --${k.padEnd(12)} ${s.help}`);
    process.exit(0);
  }
  const raw = {};
  for (let i = 0; i < argv.length; i += 2) {
    const flag = argv[i];
    const key = flag.replace(/^--/, "");
    if (!flag.startsWith("--") || !(key in spec)) fail(`unknown argument ${flag}`);
    if (i + 1 >= argv.length) fail(`${flag} needs a value`);
    raw[key] = argv[i + 1];
  }
  const out = {};
  for (const [k, s] of Object.entries(spec)) {
    if (k in raw) {
      try {
        out[k] = checks[s.check](raw[k]);
      } catch (msg) {
        fail(`argument --${k}: ${msg}`);
      }
    } else if (s.default === null) {
      fail(`the argument --${k} is required`);
    } else {
      out[k] = s.default;
    }
  }
  return out;
};
