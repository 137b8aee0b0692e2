// Minimal --flag value parsing for the examples.
module.exports = function args(defaults) {
  const out = { ...defaults };
  const argv = process.argv.slice(2);
  for (let i = 0; i < argv.length; i += 2) {
    const key = argv[i].replace(/^--/, "");
    if (!(key in out)) throw new Error(`unknown flag ${argv[i]}`);
    out[key] = argv[i + 1];
  }
  return out;
};
